"""XFER on the RTL VM (rtl/vm/transfer.py) against isa's Python Machine, bit-exact: random
IN and OUT of every space the transfer unit moves (random addresses, sizes, dynamic
offsets and ``npos``), each running beside VOPs and scalar stores into the same spaces at
other addresses, with WAITs; the SDRAM a Python model of the streams (random latency,
bubbles and back-pressure); the memories, the SDRAM and the engine's weight store compared
after the run. Then a whole tiny model streamed from the SDRAM (weight chunks, lm_head
row chunks, one layer of KV cache on chip) against ``Machine.for_model(..., sdram=True)``."""

import copy
from functools import partial

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl.vm.machine import VectorMachine
from rtl.vm.transfer import GROUP_SPACES, HALF_SPACES, WORD_SPACES, TransferUnit
from ternary_core.engine_config import EngineConfig
from ternary_core.errors import TernaryError
from ternary_core.integer import IntegerSampler, compile_model
from ternary_core.integer.sampling import xorshift32_seed
from ternary_core.model.config import BitNetConfig
from ternary_core.model.random import random_model
from ternary_core.offload import isa
from ternary_core.offload.compiler import compile_program
from ternary_core.offload.cost import overlapped_cycles
from ternary_core.offload.limits import DeviceLimits
from ternary_core.offload.memory_map import memory_images
from ternary_core.offload.semantics import element_count
from ternary_core.offload.isa import (DynSrc, Instr, MachineStatus, Op, RunParams, SFn, Space,
                                      VFn, XFn)
from ternary_core.offload.machine import DeviceStop, Machine, execute
from tests.vm_helpers import (SdramModel, XferRig, load_space, peek_space, random_images,
                              run_vm, small_limits, store_words, word_unsigned)

SDRAM_WORDS = 1 << 10
COMPARED = (Space.VMEM, Space.TMEM, Space.EMB, Space.HEAD, Space.KVK, Space.KVV, Space.EMBS,
            Space.HEADS, Space.KVS)


def xfer_limits():
    return small_limits(sdram_words=SDRAM_WORDS, emb_rows=32)


def xfer_engine(limits, cols=16):
    # 4 x 16 2-bit tiles: a 16-byte tile word, two SDRAM words
    return EngineConfig(rows=4, cols=cols, max_m=limits.max_m, max_k=limits.max_k,
                        weight_words=limits.weight_words)


def simulate_xfer(rng, limits, engine, images, sdram, instrs, params, spaces=COMPARED,
                  **model_kw):
    """Upload ``images``, ``sdram`` (into the model) and ``instrs``, run once; returns
    (result, {space: words peeked}, SDRAM words, weight store words, model)."""
    rig = XferRig(limits, engine)
    model = SdramModel(rng, sdram, **model_kw)
    got = {}

    async def tb(ctx):
        for space, words in images.items():
            await load_space(ctx, rig.vm, space, words)
        await load_space(ctx, rig.vm, Space.PROG, isa.prog_words(instrs))
        got["res"] = await run_vm(ctx, rig.vm, params, max_cycles=3_000_000)
        for sp in spaces:
            got[sp] = await peek_space(ctx, rig.vm, sp, limits.depth(sp))
        got["store"] = store_words(ctx, rig)

    sim = Simulator(rig)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(partial(model.run, port=rig.vm.sdram), background=True)
    sim.run()
    return got.pop("res"), got, model.mem, got.pop("store"), model


def reference_machine(limits, engine, images, sdram):
    mc = Machine(limits, engine.layout, strict=False)
    for space, words in images.items():
        mc.load(space, [isa.to_signed(w, 64) for w in words])
    mc.load(Space.SDRAM, np.array(sdram, dtype=np.uint64))
    return mc


def store_as_words(mc, engine):
    wb = engine.word_bytes
    return [int.from_bytes(mc.weights[i * wb:(i + 1) * wb].tobytes(), "little")
            for i in range(mc.weights.size // wb)]


# --- random transfers --------------------------------------------------------------------


def moved_spaces(lim, fn):
    """The spaces XFER moves ``fn`` (IN also WGT), but for those of a word or so (HEAD,
    HEADS on a device with SDRAM: an untied lm_head streams through EMB)."""
    spaces = GROUP_SPACES + HALF_SPACES + WORD_SPACES + ((Space.WGT,) if fn == XFn.IN else ())
    return tuple(s for s in spaces if s == Space.WGT or lim.depth(s) >= 16)


def random_transfer(rng, lim, engine, pos, token, fn):
    """An XFER IN or OUT of a random space, size and place, its addresses split at random
    into a base and a dynamic offset, its size into ``n`` and ``pos << npos_k``."""
    wpw = engine.word_bytes // isa.SDRAM_WORD_BYTES
    spaces = moved_spaces(lim, fn)
    space = Space(rng.choice(spaces))
    if space == Space.WGT:
        words = int(rng.integers(0, 7))
        n, c = words * wpw, int(rng.integers(0, engine.weight_words - words + 1))
    elif space in GROUP_SPACES + HALF_SPACES:       # 8 (int8) or 4 (int16) words a word
        per = 8 if space in GROUP_SPACES else 4
        n = int(rng.integers(0, 9))
        c = per * int(rng.integers(0, (lim.depth(space) - per * n) // per + 1))
    else:
        n = int(rng.integers(0, 13))
        c = int(rng.integers(0, lim.depth(space) - n + 1))
    s = int(rng.integers(0, SDRAM_WORDS - n + 1))
    f = dict(fn=fn, c_space=space, dyn_src=int(rng.integers(0, 2)))
    dyn = token if f["dyn_src"] == DynSrc.TOKEN else pos
    k = (int(rng.integers(3, 6)) if space in GROUP_SPACES else
         int(rng.integers(2, 5)) if space in HALF_SPACES else int(rng.integers(0, 4)))
    if rng.random() < 0.5 and (dyn << k) <= c:
        c -= dyn << k
        f.update(c_dyn=1, c_dyn_k=k)
    k = int(rng.integers(0, 5))
    if rng.random() < 0.5 and (dyn << k) <= s:
        s -= dyn << k
        f.update(s_dyn=1, s_dyn_k=k)
    k = int(rng.integers(0, 3)) if space != Space.WGT or wpw == 1 else wpw.bit_length() - 1
    if rng.random() < 0.3 and (pos << k) <= n:
        n -= pos << k
        f.update(npos=1, npos_k=k)
    return Instr(Op.XFER, n=n, c_addr=c, s_addr=s, **f)


def random_filler(rng, lim):
    """An instruction beside a transfer: a VOP (its A anywhere readable, its D in VMEM or
    a KV row space), a scalar store into KVS or a WAIT."""
    kind = rng.random()
    if kind < 0.15:
        return Instr(Op.XFER, fn=XFn.WAIT)
    if kind < 0.3:
        return Instr(Op.SOP, fn=SFn.STORE, a=int(rng.integers(1, 16)), s_space=Space.KVS,
                     s_addr=int(rng.integers(0, lim.depth(Space.KVS))))
    n = int(rng.integers(1, 24))
    a_sp = Space(rng.choice([Space.VMEM, Space.EMB, Space.KVK, Space.EMBS, Space.KVS]))
    d_sp = Space(rng.choice([Space.VMEM, Space.KVK, Space.KVV]))
    a = int(rng.integers(0, lim.depth(a_sp) - n + 1))
    d = int(rng.integers(0, min(lim.depth(d_sp), 480) - n + 1))
    if d_sp == a_sp and not (d + n <= a or a + n <= d):
        d = a
    return Instr(Op.VOP, fn=VFn.ADD, n=n, a_space=a_sp, a_addr=a, b_space=Space.IR,
                 b_addr=int(rng.integers(0, 16)), d_space=d_sp, d_addr=d, bits=8)


def random_program(rng, lim, engine, mc, pos, token, transfers, out_share=0.4):
    """``transfers`` random transfers with fillers between them, each instruction kept only
    if the Machine (``mc``, at the step's state) runs it without a hazard."""
    mc.pos, mc.token, mc.gen = pos, token, 1
    prog = []

    def keep(ins):
        nonlocal mc
        trial = copy.deepcopy(mc)
        try:
            execute(trial, ins)
        except (TernaryError, DeviceStop):
            return False
        mc = trial
        prog.append(ins)
        return True

    for _ in range(transfers):
        fn = XFn.OUT if rng.random() < out_share else XFn.IN
        while not keep(random_transfer(rng, lim, engine, pos, token, fn)):
            pass
        for _ in range(int(rng.integers(0, 5))):
            keep(random_filler(rng, lim))
    return prog + [Instr(Op.END)]


def check_against_reference(rng, lim, engine, img, sdram, prog, pos, **model_kw):
    params = RunParams(pos0=pos, n_feed=1, n_new=1, state=1)
    res, mems, sd, store, model = simulate_xfer(rng, lim, engine, img, sdram, prog, params,
                                                **model_kw)
    mc = reference_machine(lim, engine, img, sdram)
    mc.load(Space.PROG, isa.prog_words(prog))
    ref = mc.run(params)
    assert (res["status"], res["n_done"]) == (int(ref.status), ref.n_done)
    for sp in COMPARED:
        want = [word_unsigned(sp, v) for v in mc.mem[sp]]
        bad = [i for i, (g, w) in enumerate(zip(mems[sp], want)) if g != w]
        assert not bad, f"{sp.name} differs at {bad[:8]}: {[mems[sp][i] for i in bad[:4]]} " \
                        f"!= {[want[i] for i in bad[:4]]}"
    want_sd = mc.sdram.view("<u8")
    bad = np.flatnonzero(sd != want_sd)
    assert not bad.size, f"SDRAM differs at words {bad[:8]}"
    assert store == store_as_words(mc, engine)
    return res, model


@pytest.mark.parametrize("round_,cols", [(0, 16), (1, 16), (2, 8)])
def test_random_transfers_match_the_reference_machine(round_, cols, rng):
    lim = xfer_limits()
    engine = xfer_engine(lim, cols)
    pos = int(rng.integers(0, lim.context - 1))
    img = random_images(rng, lim, tokens_below=8)
    token = img[Space.TOKENS][pos]
    sdram = [int(v) for v in rng.integers(0, 1 << 63, SDRAM_WORDS, dtype=np.uint64) * 2 +
             rng.integers(0, 2, SDRAM_WORDS, dtype=np.uint64)]
    mc = reference_machine(lim, engine, img, sdram)
    prog = random_program(rng, lim, engine, mc, pos, token, transfers=14)
    ops = [ins for ins in prog if ins.op == Op.XFER and ins.fn != XFn.WAIT]
    print(f"{len(ops)} transfers: " + ", ".join(f"{XFn(i.fn).name} {Space(i.c_space).name} "
                                                f"n={i.n}" for i in ops))
    res, model = check_against_reference(rng, lim, engine, img, sdram, prog, pos)
    assert res["status"] == MachineStatus.OK
    assert model.reads + model.writes > 0


def test_every_space_each_way_lands_in_place(rng):
    """One IN of each space the unit moves, then one OUT of each into SDRAM words no other
    transfer writes (nothing one transfer moves is covered by a later one's)."""
    lim = xfer_limits()
    engine = xfer_engine(lim)
    pos = 5
    img = random_images(rng, lim, tokens_below=8)
    token = img[Space.TOKENS][pos]
    sdram = [int(v) for v in rng.integers(0, 1 << 62, SDRAM_WORDS, dtype=np.uint64)]
    prog, slot = [], SDRAM_WORDS // 2
    for fn, spaces in ((XFn.IN, moved_spaces(lim, XFn.IN)), (XFn.OUT, moved_spaces(lim, XFn.OUT))):
        for space in spaces:
            while True:
                ins = random_transfer(rng, lim, engine, pos, token, fn)
                if ins.c_space == space and ins.fn == fn:
                    break
            if fn == XFn.OUT:
                n = element_count(ins, pos)
                ins = Instr(Op.XFER, **{**ins.f, "s_addr": slot, "s_dyn": 0, "s_dyn_k": 0})
                slot += n
            elif ins.s_addr + element_count(ins, pos) > SDRAM_WORDS // 2:
                ins = Instr(Op.XFER, **{**ins.f, "s_addr": 0, "s_dyn": 0, "s_dyn_k": 0})
            prog.append(ins)
    check_against_reference(rng, lim, engine, img, sdram, prog + [Instr(Op.END)], pos)


def test_transfers_keep_their_words_under_heavy_back_pressure(rng):
    """Rare grants and long latencies: every word still lands once, in place."""
    lim = xfer_limits()
    engine = xfer_engine(lim)
    img = random_images(rng, lim, tokens_below=8)
    sdram = [int(v) for v in rng.integers(0, 1 << 62, SDRAM_WORDS, dtype=np.uint64)]
    mc = reference_machine(lim, engine, img, sdram)
    prog = random_program(rng, lim, engine, mc, 3, img[Space.TOKENS][3], transfers=8)
    check_against_reference(rng, lim, engine, img, sdram, prog, 3, p_ready=0.15,
                            p_bubble=0.8, latency=40)


def test_an_in_streams_one_sdram_word_a_cycle(rng):
    """IN of 32 SDRAM words into KVK (256 bytes) beside nothing, with an SDRAM that
    grants at once and answers every cycle: the step takes about 32 cycles more than an
    empty one (XFER n=0)."""
    lim = xfer_limits()
    engine = xfer_engine(lim)
    sdram = [int(v) for v in rng.integers(0, 1 << 62, SDRAM_WORDS, dtype=np.uint64)]
    fast = dict(p_ready=1.0, p_bubble=0.0, latency=1)
    cycles = []
    for n in (0, 32):
        prog = [Instr(Op.XFER, fn=XFn.IN, n=n, c_space=Space.KVK, c_addr=0, s_addr=5),
                Instr(Op.END)]
        res, model = check_against_reference(rng, lim, engine, {}, sdram, prog, 0, **fast)
        cycles.append(res["cycles"])
    print(f"step cycles: empty {cycles[0]}, 32-word IN {cycles[1]}")
    assert cycles[1] - cycles[0] <= 32 + 6


@pytest.mark.parametrize("space,c_addr,n", [(Space.KVK, 128, 16), (Space.VMEM, 256, 48)])
def test_an_in_yields_to_the_vms_own_writes_of_its_memory(space, c_addr, n, rng):
    """An IN into KVK (8 bytes a write) or VMEM while a VOP writes every cycle into other
    words of the same memory: both sets of words land."""
    lim = xfer_limits()
    engine = xfer_engine(lim)
    img = random_images(rng, lim, tokens_below=8)
    sdram = [int(v) for v in rng.integers(0, 1 << 62, SDRAM_WORDS, dtype=np.uint64)]
    prog = [Instr(Op.XFER, fn=XFn.IN, n=n, c_space=space, c_addr=c_addr, s_addr=7),
            Instr(Op.VOP, fn=VFn.PASS, n=120, a_space=Space.VMEM, a_addr=380, d_space=space,
                  d_addr=0, bits=8),
            Instr(Op.XFER, fn=XFn.WAIT), Instr(Op.END)]
    check_against_reference(rng, lim, engine, img, sdram, prog, 0, p_ready=1.0, p_bubble=0.0,
                            latency=1)


def test_end_waits_for_the_steps_transfer(rng):
    """Each step copies the VMEM words that the previous step's last instruction, an IN
    with no WAIT after it, brought in: END finished that IN (a slow SDRAM)."""
    lim = xfer_limits()
    engine = xfer_engine(lim)
    img = random_images(rng, lim, tokens_below=8)
    sdram = [int(v) for v in rng.integers(0, 1 << 62, SDRAM_WORDS, dtype=np.uint64)]
    prog = [Instr(Op.VOP, fn=VFn.PASS, n=40, a_space=Space.VMEM, a_addr=100,
                  d_space=Space.VMEM, d_addr=200, dyn_sel=isa.Dyn.D, dyn_k=6, bits=48),
            Instr(Op.XFER, fn=XFn.IN, n=40, c_space=Space.VMEM, c_addr=100, s_addr=3, s_dyn=1,
                  s_dyn_k=6),
            Instr(Op.END)]
    params = RunParams(pos0=0, n_feed=3, n_new=1, state=1)
    res, mems, _, _, _ = simulate_xfer(rng, lim, engine, img, sdram, prog, params,
                                       spaces=(Space.VMEM,), latency=30, p_bubble=0.5)
    mc = reference_machine(lim, engine, img, sdram)
    mc.load(Space.PROG, isa.prog_words(prog))
    assert mc.run(params).status == res["status"] == MachineStatus.OK
    assert mems[Space.VMEM] == [word_unsigned(Space.VMEM, v) for v in mc.mem[Space.VMEM]]


@pytest.mark.parametrize("fn,space", [(XFn.OUT, Space.WGT), (XFn.OUT, Space.ACT),
                                      (XFn.IN, Space.ACT), (XFn.IN, Space.TOKENS)])
def test_a_transfer_the_unit_does_not_move_stops_with_bad_opcode(fn, space, rng):
    lim = xfer_limits()
    engine = xfer_engine(lim)
    prog = [Instr(Op.SOP, fn=SFn.IADD, d=1, imm=1),
            Instr(Op.XFER, fn=fn, n=2, c_space=space, c_addr=0, s_addr=0), Instr(Op.END)]
    res, _, _, _, _ = simulate_xfer(rng, lim, engine, {}, [0] * SDRAM_WORDS, prog,
                                    RunParams(pos0=0, n_feed=1, n_new=1, state=1), spaces=())
    assert (res["status"], res["err_pc"]) == (MachineStatus.BAD_OPCODE, 1)


def test_a_vm_without_sdram_has_no_transfer_ports():
    lim = small_limits()
    plain = VectorMachine(lim, xfer_engine(lim))
    vm = VectorMachine(xfer_limits(), xfer_engine(xfer_limits()))
    plain._MustUse__used = vm._MustUse__used = True      # (their signatures only)
    assert {"sdram", "wgt"}.isdisjoint(plain.signature.members)
    assert len(vm.sdram.read_req.payload.addr) == (SDRAM_WORDS - 1).bit_length()
    assert len(vm.wgt.data) == 8 * 16


def test_the_transfer_unit_asks_for_bursts_of_at_most_max_burst_words(rng):
    """The unit alone, asking for 3 words a burst at most: an IN of 11 words into VMEM (its
    memory's write free at random), an OUT of 10 KVS words, an IN of 7 SDRAM words into
    KVK (8 bytes a write): every word once and in place, in bursts that cover each
    transfer in order."""
    xu = TransferUnit(10, 16, 4, 12, max_burst=3)
    sdram = [int(v) for v in rng.integers(0, 1 << 62, 1 << 10, dtype=np.uint64)]
    chip = [int(v) for v in rng.integers(0, 1 << 62, 1 << 12, dtype=np.uint64)]
    model = SdramModel(rng, sdram)
    written = {}
    transfers = [dict(out=0, space=Space.VMEM, c_addr=5, s_addr=17, n=11),
                 dict(out=1, space=Space.KVS, c_addr=100, s_addr=500, n=10),
                 dict(out=0, space=Space.KVK, c_addr=64, s_addr=40, n=7)]

    async def memory(ctx):
        while True:
            ctx.set(xu.w_ready, int(rng.random() < 0.6))
            _, _, w_en, w_ready, w_addr, w_data, r_en, r_addr = await ctx.tick().sample(
                xu.w_en, xu.w_ready, xu.w_addr, xu.w_data, xu.r_en, xu.r_addr)
            if w_en and w_ready:
                assert int(w_addr) not in written
                written[int(w_addr)] = int(w_data)
            ctx.set(xu.r_data, chip[int(r_addr)] if r_en else 0)

    async def tb(ctx):
        for t in transfers:
            ctx.set(xu.start.payload, t)
            ctx.set(xu.start.valid, 1)
            await ctx.tick().until(xu.start.ready)
            ctx.set(xu.start.valid, 0)
        await ctx.tick().until(~xu.busy)

    sim = Simulator(xu)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(memory, background=True)
    sim.add_testbench(partial(model.run, port=xu.sdram), background=True)
    sim.run()
    assert written == {**{5 + i: sdram[17 + i] for i in range(11)},
                       **{64 + 8 * i: sdram[40 + i] for i in range(7)}}
    assert [int(w) for w in model.mem[500:510]] == chip[100:110]
    assert all(1 <= n <= 3 for _, _, n in model.bursts)
    for kind, t in zip(("read", "write", "read"), transfers):
        lo, hi = t["s_addr"], t["s_addr"] + t["n"]
        mine = [b for b in model.bursts if b[0] == kind and lo <= b[1] < hi]
        assert [b[1] for b in mine] == list(range(lo, hi, 3))
        assert sum(b[2] for b in mine) == t["n"]


# --- a whole model streamed from the SDRAM -----------------------------------------------

TINY = dict(vocab_size=37, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
            num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=12)


def streamed_model(rng, tie, cols, features, prog_words=1024):
    im = compile_model(random_model(rng, BitNetConfig(tie_word_embeddings=tie, **TINY)))
    c = im.config
    engine = EngineConfig(rows=4, cols=cols, max_m=80, max_k=64, weight_words=64)
    limits = DeviceLimits.for_config(c, im.max_len, vmem_words=1024, prog_words=prog_words,
                                     sdram_words=1 << 14, emb_rows=8, kv_slots=1,
                                     vmem_single=2 * c.vocab_size, features=features).with_engine(engine)
    program = compile_program(im, limits, engine=engine, sdram=True, **limits.compile_options())
    return im, engine, limits, program


# (40 s each in Amaranth's simulator: the default run keeps the richest variant; the
# simulated board runs the same RTL over whole models under Verilator in
# tests/test_offload_sim_board_sdram.py)
# (prog_words 64: the program streams through PROG in segments of 32 instructions)
@pytest.mark.parametrize("tie,cols,temperature,top_k,features,prog_words", [
    pytest.param(False, 8, 0.0, 0, isa.FEATURES_ALL, 1024, marks=pytest.mark.slow),
    (True, 16, 0.8, 3, isa.FEATURES_ALL, 64),
    pytest.param(False, 16, 0.8, 0, 0, 1024, marks=pytest.mark.slow)])
def test_a_model_streamed_from_the_sdram_runs_on_the_rtl_vm_as_on_the_reference_machine(
        tie, cols, temperature, top_k, features, prog_words, rng, seed):
    im, engine, limits, program = streamed_model(rng, tie, cols, int(features), prog_words)
    assert program.segmented == (prog_words < 1024)
    xfers = [ins for ins in program.instrs if ins.op == Op.XFER]
    wgt = sum(ins.c_space == Space.WGT for ins in xfers)
    print(f"{len(program.instrs)} instructions, {len(xfers)} XFER ({wgt} weight chunks)")
    assert wgt > 4 * limits.layers          # some stacks in several chunks
    prompt = [int(t) for t in rng.integers(0, TINY["vocab_size"], 2)]
    n_new = 2                   # steps at positions 0 (no KV to fetch), 1 and 2
    inv_t = IntegerSampler(temperature).inv_t if temperature else None
    inv_t = (int(inv_t.m), int(inv_t.e)) if inv_t is not None else (0, 0)
    state = xorshift32_seed(seed % 1000)
    params = RunParams(pos0=0, n_feed=len(prompt), n_new=n_new, state=state, inv_t_m=inv_t[0],
                       inv_t_e=inv_t[1], top_k=top_k)
    mc, _ = Machine.for_model(im, limits, engine, sdram=True, **limits.compile_options())
    want_ids, want = mc.generate(prompt, n_new, state=state, inv_t=inv_t, top_k=top_k)
    assert want.status == MachineStatus.OK

    images = {sp: [int(w) for w in words] for sp, words in memory_images(im, program).items()}
    sdram = images.pop(Space.SDRAM) + [0] * limits.sdram_words
    prog = images.pop(Space.PROG)    # (segmented: segment 0)
    images[Space.TOKENS] = prompt
    res, mems, sd, _, model = simulate_xfer(
        rng, limits, engine, images, sdram[:limits.sdram_words],
        program.instrs[:len(prog) // 2], params,
        spaces=(Space.TOKENS, Space.KVK, Space.KVS, Space.CYCLES))
    steps = len(prompt) + n_new - 1
    cycles = mems[Space.CYCLES][:steps]
    projected = [overlapped_cycles(program, p, words_per_cycle=0.7, gen=p >= len(prompt) - 1,
                                   sampled=bool(temperature), top_k=top_k) for p in range(steps)]
    print(f"cycles per step {cycles} (cost.overlapped_cycles at 0.7 words a cycle: "
          f"{projected}); SDRAM bursts read {model.reads}, written {model.writes}")
    assert res["cycles"] == sum(cycles)
    assert (res["status"], res["state"], res["n_done"]) == (int(want.status), want.state,
                                                              want.n_done)
    assert mems[Space.TOKENS][len(prompt):len(prompt) + n_new] == want_ids
    for sp in (Space.KVK, Space.KVS):
        assert mems[sp] == [word_unsigned(sp, v) for v in mc.mem[sp]], sp.name
    assert np.array_equal(sd, mc.sdram.view("<u8"))
