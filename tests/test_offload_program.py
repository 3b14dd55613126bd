"""The whole-model device's program (ternary_core/offload): the Machine running the compiled
step program is bit-exact to the integer golden model (IntegerRunner + IntegerSampler),
logits and ids, greedy and sampled, on the shipped model and on a random GQA model at its
limits; the encoding round-trips; limits and run errors name the problem; run() is
idempotent."""

import numpy as np
import pytest

from host.generate import default_model_path
from ternary_core.errors import TernaryError
from ternary_core.integer import IntegerRunner, IntegerSampler, compile_model
from ternary_core.integer.sampling import xorshift32_seed
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import load_model
from ternary_core.offload import isa
from ternary_core.offload.compiler import compile_program
from ternary_core.offload.cost import program_cost
from ternary_core.offload.isa import Instr, MachineStatus, Op, Space
from ternary_core.offload.limits import DeviceLimits
from ternary_core.offload.machine import Machine, execute
from tests.test_model_files import random_model

PROMPT = [int(b) for b in b"To be, or not to be, that is"]


@pytest.fixture(scope="module")
def shipped():
    return compile_model(load_model(default_model_path()))


def golden(im, prompt, n_new, temperature=0.0, top_k=0, seed=0):
    """ids and the logits of every sampling step, from IntegerRunner + IntegerSampler."""
    runner = IntegerRunner(im)
    sampler = IntegerSampler(temperature, top_k, seed)
    for t in prompt:
        logits = runner.step(t)
    ids, all_logits = [], []
    for _ in range(n_new):
        all_logits.append(logits)
        ids.append(sampler(logits))
        if len(ids) < n_new:
            logits = runner.step(ids[-1])
    return ids, all_logits


def device(mc, program, prompt, n_new, temperature=0.0, top_k=0, seed=0, pos0=0, state=None):
    """ids and the logits of every sampling step, from the Machine."""
    inv_t = IntegerSampler(temperature).inv_t if temperature else None
    inv_t = (int(inv_t.m), int(inv_t.e)) if inv_t is not None else (0, 0)
    la, V = program.logits
    logits = []

    def on_step(m, pos):
        if m.gen:
            logits.append(m.mem[Space.VMEM][la:la + V].copy())

    state = xorshift32_seed(seed) if state is None else state
    ids, res = mc.generate(prompt, n_new, pos0=pos0, state=state, inv_t=inv_t, top_k=top_k,
                           on_step=on_step)
    assert res.status == MachineStatus.OK, res
    return ids, logits, res


def assert_same(got, want):
    gids, glog = got[:2]
    wids, wlog = want
    for i, (g, w) in enumerate(zip(glog, wlog)):
        bad = np.nonzero(g != w)[0]
        assert not bad.size, f"step {i}: logits differ at {bad[:5]}"
    assert gids == wids


def test_shipped_model_greedy_full_context_bit_exact(shipped):
    mc, program = Machine.for_model(shipped)
    n = shipped.max_len                    # one fed token, 256 steps: every position
    got = device(mc, program, [PROMPT[0]], n)
    assert len(got[0]) == n and len(got[1]) == n
    assert_same(got, golden(shipped, [PROMPT[0]], n))


@pytest.mark.parametrize("top_k,fused", [(0, False), (40, True)])
def test_shipped_model_sampled_bit_exact(shipped, top_k, fused, seed):
    # fused: SVOP SMUL2 and the ATTN SCORES / PV passes instead of the one-op passes
    mc, program = Machine.for_model(shipped, smul2=fused, fuse_attention=fused)
    s = seed % 1000
    got = device(mc, program, PROMPT, 40, 0.8, top_k, s)
    want = golden(shipped, PROMPT, 40, 0.8, top_k, s)
    assert_same(got, want)
    # the sampler state comes back as the golden sampler leaves it
    ref = IntegerSampler(0.8, top_k, s)
    for lg in want[1]:
        ref(lg)
    assert got[2].state == ref.state


GQA = {  # odd sizes: head_dim 8 and 12 (not a power of two), groups of 3, vocab 37
    "6x8/2": dict(vocab_size=37, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=24),
    "3x12/1": dict(vocab_size=37, hidden_size=36, intermediate_size=44, num_hidden_layers=1,
                   num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=20),
}


@pytest.mark.parametrize("act", ["relu2", "silu"])
@pytest.mark.parametrize("shape,tie,fused,room", [("6x8/2", False, False, 0),
                                                  ("6x8/2", True, True, 0),
                                                  ("3x12/1", False, False, 0),
                                                  ("3x12/1", False, True, 1)])
def test_random_gqa_model_at_its_limits_bit_exact(rng, seed, shape, tie, fused, room, act):
    im = compile_model(random_model(rng, BitNetConfig(tie_word_embeddings=tie, hidden_act=act,
                                                      **GQA[shape])))
    # every model size at its limit, or (room) a device larger in every dimension
    limits = DeviceLimits.for_config(im.config)
    if room:
        limits = DeviceLimits(**{f: 2 * getattr(limits, f) for f in (
            "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "context",
            "max_m", "max_k")})
    mc, program = Machine.for_model(im, limits, smul2=fused, fuse_attention=fused)
    prompt = [int(t) for t in rng.integers(0, 37, 5)]
    n = im.max_len - len(prompt) + 1                 # to the end of the context
    assert_same(device(mc, program, prompt, n), golden(im, prompt, n))
    s = seed % 1000
    assert_same(device(mc, program, prompt, n, 0.8, 3, s), golden(im, prompt, n, 0.8, 3, s))


def test_run_is_idempotent_and_resumes_from_the_cache(shipped, seed):
    mc, program = Machine.for_model(shipped)
    s = seed % 1000
    first = device(mc, program, PROMPT, 12, 0.8, 0, s)
    again = device(mc, program, PROMPT, 12, 0.8, 0, s)
    assert again[0] == first[0] and again[2] == first[2]
    # from pos0 = 10: KV rows below it are the first run's, TOKENS[10..] are rewritten
    resumed = device(mc, program, PROMPT[10:], 12, 0.8, 0, s, pos0=10)
    assert resumed[0] == first[0]


def test_limits_name_the_field_that_does_not_fit(shipped):
    cfg = shipped.config
    with pytest.raises(TernaryError,
                       match="hidden_size 128 is more than the device's hidden limit 64"):
        DeviceLimits(hidden=64).check(cfg)
    with pytest.raises(TernaryError, match="num_key_value_heads 2 .* kv_heads limit 1"):
        DeviceLimits(kv_heads=1).check(cfg)
    with pytest.raises(TernaryError,
                       match="context 512 is more than the device's context limit 256"):
        DeviceLimits().check(cfg, 512)
    with pytest.raises(TernaryError, match="vmem_words"):
        compile_program(shipped, DeviceLimits(vmem_words=1024))
    with pytest.raises(TernaryError, match="prog_words limit is 100"):
        compile_program(shipped, DeviceLimits(prog_words=100))
    with pytest.raises(TernaryError, match="DeviceLimits.heads must be a positive integer"):
        DeviceLimits(heads=0)
    for bad in (4, -1, True):
        with pytest.raises(TernaryError, match=r"DeviceLimits.features must be a sum of "
                                               r"isa.Feature bits \(0..3\)"):
            DeviceLimits(features=bad)
    with pytest.raises(TernaryError, match="field n = 16384 does not fit 14 bits"):
        isa.encode(Instr(Op.VOP, fn=isa.VFn.PASS, n=1 << 14))


def test_run_errors_stop_with_a_status(shipped):
    mc, program = Machine.for_model(shipped)
    mc.load(Space.TOKENS, [1])
    res = mc.run(isa.RunParams(pos0=0, n_feed=1, n_new=257, state=0))          # one past the context
    assert res.status == MachineStatus.BAD_PARAMS
    mc.load(Space.TOKENS, [1, 300])                    # a fed id past the vocabulary
    res = mc.run(isa.RunParams(pos0=0, n_feed=2, n_new=3, state=0))
    assert (res.status, res.err_pos, res.err_pc) == (MachineStatus.BAD_TOKEN, 1, 0)
    mc.prog = [Instr(Op.NOP)]                           # no END
    assert mc.run(isa.RunParams(pos0=0, n_feed=1, n_new=1, state=0)).status == MachineStatus.PROG_END
    with pytest.raises(Exception) as e:
        execute(mc, 0xF)                                 # opcode 15
    assert e.value.status == MachineStatus.BAD_OPCODE


def test_struct_fields_cover_the_128_bits_in_order():
    for op in isa.LAYOUTS:
        fields = isa.struct_fields(op)
        assert sum(w for _, w, _ in fields) == isa.INSTR_BITS
        at = 0
        for name, width, _ in fields:
            if not name.startswith("_pad"):
                assert {**isa.HEADER, **isa.LAYOUTS[op]}[name].lsb == at
            at += width


def test_encoding_round_trips_every_field(rng):
    for op, layout in isa.LAYOUTS.items():
        for _ in range(20):
            f = {}
            for name, fd in {**isa.HEADER, **layout}.items():
                if name == "op":
                    continue
                lo = -(1 << (fd.width - 1)) if fd.signed else 0
                f[name] = int(rng.integers(lo, lo + (1 << fd.width)))
            ins = Instr(op, **f)
            word = isa.encode(ins)
            assert 0 <= word < 1 << isa.INSTR_BITS and word & 0xF == op
            assert isa.decode(word) == ins
            assert isa.prog_unwords(isa.prog_words([ins])) == [ins]


def test_execute_one_vop_matches_its_definition(rng):
    """One MULS with a reduction on a random state, against the spec written out with
    the fixed-point primitives."""
    from ternary_core.integer.fixed import shift_round_saturate
    mc = Machine(DeviceLimits(), strict=False)
    x = rng.integers(-(1 << 39), 1 << 39, 64)
    mc.load(Space.VMEM, x, 100)
    mc.sr_m[7], mc.sr_e[7] = int(rng.integers(1 << 15, 1 << 16)), -20
    mc.ir[3] = 5
    execute(mc, Instr(Op.VOP, fn=isa.VFn.MULS, n=64, a_space=Space.VMEM, a_addr=100,
                      b_space=Space.SR, b_addr=7, d_space=Space.VMEM, d_addr=300, sh_imm=-2,
                      sh_ir=3, bits=24, red=isa.Red.ARGMAX, red_ir=9))
    want = shift_round_saturate(x * mc.sr_m[7], -2 + 5 + 20, 24)
    np.testing.assert_array_equal(mc.mem[Space.VMEM][300:364], want)
    assert mc.ir[9] == int(np.argmax(want))


def test_program_cost_grows_with_attention_only(shipped):
    program = compile_program(shipped)
    c = shipped.config
    L, nh, hd = c.num_hidden_layers, c.num_attention_heads, c.head_dim
    a, b = program_cost(program, 0), program_cost(program, 100)
    # per key and query head: DOT and AXPY ceil(hd/32) each, 2 SVOP and 3 VOP elements;
    # per key and KV head: 1 SVOP element (the largest value-scale exponent)
    per_key = L * (nh * (2 * -(-hd // 32) + 2 + 3) + c.num_key_value_heads)
    assert b["total"] - a["total"] == 100 * per_key
    smul2 = compile_program(shipped, smul2=True)     # one SVOP element fewer per key and head
    assert (program_cost(smul2, 100)["total"] - program_cost(smul2, 0)["total"]
            == 100 * (per_key - L * nh))
    # fused attention: per key and query head SMUL2, SCORES and PV (a row each)
    fused = compile_program(shipped, smul2=True, fuse_attention=True)
    assert (program_cost(fused, 100)["total"] - program_cost(fused, 0)["total"]
            == 100 * L * (nh * (1 + 2 * -(-hd // 32)) + c.num_key_value_heads))
    # matvecs: the engine's tiles of each stacked layer
    e = program.mm.engine
    d, f, kv = c.hidden_size, c.intermediate_size, c.num_key_value_heads * hd
    tiles = sum(-(-m // e.rows) * -(-k // e.cols) for m, k in
                ((d + 2 * kv, d), (d, d), (2 * f, d), (d, f)))
    assert a["MATVEC"] == L * tiles
    # no lm_head while feeding a prompt
    feed = program_cost(program, 0, gen=False)
    assert a["DOT"] - feed["DOT"] == c.vocab_size * -(-d // 32)


def test_locate_difference_names_the_op_that_went_wrong(shipped):
    from ternary_core.offload.check import locate_difference
    spaces = (Space.VMEM, Space.KVK, Space.KVV, Space.KVS, Space.TOKENS)
    good, program = Machine.for_model(shipped)
    bad, _ = Machine.for_model(shipped)
    pc = program.names.index("layer 1 quantize k head 0 into the cache: quantize to int8")
    f = dict(program.instrs[pc].f, bits=7)              # a wrong saturation width
    bad.prog[pc] = Instr(program.instrs[pc].op, program.instrs[pc].name, **f)
    for mc in (good, bad):
        mc.generate(PROMPT[:6], 1)
    want = {s: good.mem[s] for s in spaces}
    assert locate_difference(program, 5, want, {s: good.mem[s].copy() for s in spaces}) is None
    where = locate_difference(program, 5, want, {s: bad.mem[s] for s in spaces})
    assert where[:2] == (pc, "layer 1 quantize k head 0 into the cache: quantize to int8")
    assert where[2] == Space.KVK


@pytest.mark.parametrize("fused,act", [(False, "relu2"), (True, "relu2"), (False, "silu")])
def test_a_step_reads_only_registers_it_wrote_or_constants(shipped, fused, act):
    """No register state flows from one step to the next: a VM need not reset IR/SR."""
    from dataclasses import replace

    from ternary_core.offload.check import instr_register_reads, instr_writes
    im = replace(shipped, config=replace(shipped.config, hidden_act=act))
    program = compile_program(im, smul2=fused, fuse_attention=fused)
    assert any(ins.op == Op.VOP and ins.fn == isa.VFn.SIGMUL
               for ins in program.instrs) == (act == "silu")
    known = {("SR", i) for i in program.sr_init} | {("SR", isa.SR_INV_T), ("IR", 0)}
    for pc, ins in enumerate(program.instrs):
        for reg in instr_register_reads(ins):
            assert reg in known, f"{program.names[pc]} reads {reg} before any write"
        known |= {(w[0], w[1]) for w in instr_writes(ins, 0) if w[0] in ("IR", "SR")}
