"""A whole small model on the RTL VM with a real MatvecEngine: a random GQA model compiled
by isa's compiler, uploaded (images, program, weights), prompt fed and tokens generated
by one ``run``; the ids, the KV cache and VMEM == isa's Python Machine (which is itself
bit-exact to the integer golden model: tests/test_offload_program.py). The program is
compiled for the device's features, as the host does: with SMUL2 and the fused attention
(ATTN), and without them (an older device's program)."""

import numpy as np
import pytest

from ternary_core.engine_config import EngineConfig
from ternary_core.integer import IntegerSampler, compile_model
from ternary_core.integer.sampling import xorshift32_seed
from ternary_core.model.config import BitNetConfig
from ternary_core.offload import isa
from ternary_core.offload.compiler import compile_program
from ternary_core.offload.memory_map import memory_images, weight_stacks
from ternary_core.offload.cost import program_cost
from ternary_core.offload.isa import MachineStatus, RunParams, Space
from ternary_core.offload.limits import DeviceLimits
from ternary_core.offload.machine import Machine
from tests.test_model_files import random_model
from tests.vm_helpers import VmRig, load_space, peek_space, run_vm, simulate

TINY = dict(vocab_size=37, hidden_size=48, intermediate_size=40, num_hidden_layers=1,
            num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=12)


def build(rng, tie, act="relu2", features=int(isa.FEATURES_ALL)):
    im = compile_model(random_model(rng, BitNetConfig(tie_word_embeddings=tie, hidden_act=act,
                                                      **TINY)))
    c = im.config
    engine = EngineConfig(rows=4, cols=8, max_m=c.hidden_size + 2 * c.num_key_value_heads * c.head_dim
                          + 2 * c.intermediate_size, max_k=64, weight_words=512)
    limits = DeviceLimits.for_config(c, im.max_len, vmem_words=1024, prog_words=512,
                                     features=features).with_engine(engine)
    program = compile_program(im, limits, engine=engine, **limits.compile_options())
    return im, engine, limits, program


def run_rtl(im, engine, limits, program, prompt, params):
    rig = VmRig(limits, engine)
    images = memory_images(im, program)
    stacks = weight_stacks(im, limits, engine)
    out = {}

    async def tb(ctx):
        from tests.amaranth_helpers import write_words
        for st in stacks:
            packed = np.frombuffer(st.packed, np.uint8).reshape(-1, engine.word_bytes)
            await write_words(ctx, rig.eng.weights, st.base, packed)
        for space, words in images.items():
            await load_space(ctx, rig.vm, space, [int(w) for w in words])
        await load_space(ctx, rig.vm, Space.TOKENS, prompt, params.pos0)
        out["res"] = await run_vm(ctx, rig.vm, params, max_cycles=3_000_000)
        out["tokens"] = await peek_space(ctx, rig.vm, Space.TOKENS, limits.depth(Space.TOKENS))
        out["cycles"] = await peek_space(ctx, rig.vm, Space.CYCLES, limits.depth(Space.CYCLES))
        out["kvk"] = await peek_space(ctx, rig.vm, Space.KVK, limits.depth(Space.KVK))

    simulate(rig, tb)
    return out


@pytest.mark.parametrize("tie,temperature,top_k,act,features", [
    (False, 0.0, 0, "relu2", isa.FEATURES_ALL), (True, 0.8, 3, "relu2", 0),
    (False, 0.8, 3, "silu", isa.FEATURES_ALL)])
def test_small_model_runs_on_the_rtl_vm_as_on_the_reference_machine(tie, temperature, top_k, act,
                                                                    features, rng, seed):
    im, engine, limits, program = build(rng, tie, act, int(features))
    ops = {ins.op for ins in program.instrs}
    assert (isa.Op.ATTN in ops) == bool(features & isa.Feature.ATTN)
    prompt = [int(t) for t in rng.integers(0, 37, 3)]
    n_new = 3
    inv_t = IntegerSampler(temperature).inv_t if temperature else None
    inv_t = (int(inv_t.m), int(inv_t.e)) if inv_t is not None else (0, 0)
    state = xorshift32_seed(seed % 1000)
    params = RunParams(pos0=0, n_feed=len(prompt), n_new=n_new, state=state, inv_t_m=inv_t[0],
                       inv_t_e=inv_t[1], top_k=top_k)

    mc, _ = Machine.for_model(im, limits, engine, **limits.compile_options())
    want_ids, want = mc.generate(prompt, n_new, state=state, inv_t=inv_t, top_k=top_k)
    assert want.status == MachineStatus.OK
    got = run_rtl(im, engine, limits, program, prompt, params)
    res = got["res"]
    assert (res["status"], res["state"], res["n_done"]) == (int(want.status), want.state, want.n_done)
    at = len(prompt)
    assert got["tokens"][at:at + n_new] == want_ids
    kvk = [isa.to_signed(v, 8) for v in got["kvk"]]
    assert kvk == [int(v) for v in mc.mem[Space.KVK]]
    steps = len(prompt) + n_new - 1
    cycles = got["cycles"][:steps]
    assert res["cycles"] == sum(cycles)
    ideal = [program_cost(program, p, gen=p >= len(prompt) - 1, sampled=bool(temperature),
                          top_k=top_k)["total"] for p in range(steps)]
    print(f"cycles per step {cycles}; program_cost (op-level ideal) {ideal}")
