"""Test rig of the VM (rtl/vm): a VectorMachine wired to a real MatvecEngine in the
Amaranth simulator, with async helpers to upload spaces, run, and read spaces back, and
the reference side: isa's Python Machine with the same images and program."""

import numpy as np
from amaranth import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from rtl.matvec_engine import MatvecEngine
from rtl.vm.machine import VectorMachine
from ternary_core.engine_config import EngineConfig
from ternary_core.offload import isa
from ternary_core.offload.limits import DeviceLimits
from ternary_core.offload.isa import Instr, Op, RunParams, SFn, Space, VFn
from ternary_core.offload.machine import Machine
from tests.amaranth_helpers import packed_words, write_words

MASK64 = (1 << 64) - 1


class VmRig(wiring.Component):
    """VectorMachine + MatvecEngine, the engine's ports connected to the VM's."""

    def __init__(self, limits, engine_config):
        self.vm = VectorMachine(limits, engine_config)
        self.eng = MatvecEngine(engine_config)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.vm, m.submodules.eng = self.vm, self.eng
        wiring.connect(m, self.vm.engine.cmd, self.eng.cmd)
        wiring.connect(m, self.vm.engine.acts, self.eng.acts)
        wiring.connect(m, self.eng.result, self.vm.engine.result)
        m.d.comb += self.vm.engine.busy.eq(self.eng.busy)
        return m


def small_limits(**kw):
    base = dict(hidden=64, layers=1, heads=2, kv_heads=1, head_dim=16, ffn=64, vocab=64,
                context=16, vmem_words=512, prog_words=512, max_m=128, max_k=64,
                weight_words=256)
    base.update(kw)
    return DeviceLimits(**base)


def small_engine(limits):
    return EngineConfig(rows=4, cols=8, max_m=limits.max_m, max_k=limits.max_k,
                        weight_words=limits.weight_words)


async def load_space(ctx, vm, space, words, addr=0):
    s = vm.load
    ctx.set(s.valid, 1)
    for i, w in enumerate(words):
        ctx.set(s.payload, {"space": int(space), "addr": addr + i, "data": int(w) & MASK64})
        await ctx.tick().until(s.ready)
    ctx.set(s.valid, 0)


async def peek_space(ctx, vm, space, n, addr=0):
    out = []
    for i in range(n):
        ctx.set(vm.peek_req.payload, {"space": int(space), "addr": addr + i})
        ctx.set(vm.peek_req.valid, 1)
        await ctx.tick().until(vm.peek_req.ready)
        ctx.set(vm.peek_req.valid, 0)
        ctx.set(vm.peek.ready, 1)
        for _ in range(100):
            _, _, valid, v = await ctx.tick().sample(vm.peek.valid, vm.peek.payload)
            if valid:
                break
        else:
            raise TimeoutError("no peek answer")
        ctx.set(vm.peek.ready, 0)
        out.append(int(v))
    return out


async def run_vm(ctx, vm, params, max_cycles=200_000):
    ctx.set(vm.run.payload, {k: getattr(params, k) for k, _, _ in isa.RUN_PARAMS})
    ctx.set(vm.run.valid, 1)
    await ctx.tick().until(vm.run.ready)
    ctx.set(vm.run.valid, 0)
    ctx.set(vm.done.ready, 1)
    for _ in range(max_cycles):
        _, _, valid, p = await ctx.tick().sample(vm.done.valid, vm.done.payload)
        if valid:
            ctx.set(vm.done.ready, 0)
            return {k: int(getattr(p, k)) for k, _, _ in isa.RUN_RESULT}
    raise TimeoutError("the VM did not finish")


def simulate(rig, testbench):
    sim = Simulator(rig)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def word_unsigned(space, v):
    """A space's value as the VM's peek gives it: its low word bits, zero-extended."""
    return int(v) & ((1 << isa.SPACES[Space(space)].word_bits) - 1)


# --- programs that set and dump registers --------------------------------------------


def set_ir_program(values):
    """Instructions that set IR[i] = values[i] (48-bit) for i >= 1, with IADD only: one
    immediate when it fits 32 bits, else the top 24 bits, doubled 24 times, plus the
    low 24 bits."""
    out = []
    for i, v in enumerate(values):
        if i == 0:
            continue
        v = isa.to_signed(v, isa.IR_BITS)
        if -(1 << 31) <= v < (1 << 31):
            out.append(Instr(Op.SOP, fn=SFn.IADD, d=i, imm=v))
            continue
        hi, lo = v >> 24, v & ((1 << 24) - 1)
        out.append(Instr(Op.SOP, fn=SFn.IADD, d=i, imm=hi))
        out += [Instr(Op.SOP, fn=SFn.IADD, d=i, a=i, b=i)] * 24
        out.append(Instr(Op.SOP, fn=SFn.IADD, d=i, a=i, imm=lo))
    return out


def dump_ir_program(at, zero_at):
    """VOPs that write IR[i] into VMEM: its low 40 bits at ``at + 2i`` and
    ``round(IR / 2**24)`` at ``at + 2i + 1`` (A is a VMEM word that holds 0)."""
    out = []
    for i in range(1, isa.IR_COUNT):
        for k, sh in ((0, 0), (1, 24)):
            out.append(Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.VMEM, a_addr=zero_at,
                             b_space=Space.IR, b_addr=i, d_space=Space.VMEM, d_addr=at + 2 * i + k,
                             sh_imm=sh, bits=48))
    return out


def dump_sr_program(at, regs):
    return [Instr(Op.SOP, fn=SFn.STORE, a=r, s_space=Space.VMEM, s_addr=at + j)
            for j, r in enumerate(regs)]


def reference(limits, layout, images, instrs, params, weights=()):
    """isa's Machine with ``images`` ({space: words}), the program and the weights;
    returns (machine, RunResult). A PROG image (raw words, any opcode) is decoded
    instruction by instruction as the device does: an unknown one becomes BAD_OPCODE."""
    mc = Machine(limits, layout, strict=False)
    for space, words in images.items():
        if space == Space.PROG:
            mc.prog = [_decode_or_raw(words[i] | (words[i + 1] << 64))
                       for i in range(0, len(words), 2)]
        else:
            mc.load(space, [isa.to_signed(w, 64) for w in words])
    if instrs:
        mc.load(Space.PROG, isa.prog_words(instrs))
    for base, packed in weights:
        mc.write_weights(base, packed)
    res = mc.run(params)
    return mc, res


def _decode_or_raw(word):
    """The Instr of a word, or the word itself (the Machine's execute() then stops with
    BAD_OPCODE, as the device does)."""
    try:
        return isa.decode(word)
    except Exception:
        return word


def run_both(rng, limits, images, instrs, params, *, spaces=(Space.VMEM,), weights=(),
             prog_image=False):
    """Upload ``images`` and ``instrs`` to the RTL VM and to the reference Machine, run
    both with ``params``; return ``(rtl result, ref result, {space: (rtl, ref)})``."""
    eng_cfg = small_engine(limits)
    rig = VmRig(limits, eng_cfg)
    got = {}

    async def tb(ctx):
        for base, packed in weights:
            await write_words(ctx, rig.eng.weights, base, packed.reshape(-1, eng_cfg.word_bytes))
        for space, words in images.items():
            await load_space(ctx, rig.vm, space, words)
        if not prog_image:
            await load_space(ctx, rig.vm, Space.PROG, isa.prog_words(instrs))
        got["res"] = await run_vm(ctx, rig.vm, params)
        for sp in spaces:
            got[sp] = await peek_space(ctx, rig.vm, sp, limits.depth(sp))

    simulate(rig, tb)
    mc, ref = reference(limits, eng_cfg.layout, images, instrs, params,
                        [(b, p.reshape(-1)) for b, p in weights])
    mems = {sp: (got[sp], [word_unsigned(sp, v) for v in mc.mem[sp]]) for sp in spaces}
    return got["res"], ref, mems


def result_fields(ref):
    return {"status": int(ref.status), "state": int(ref.state), "err_pc": int(ref.err_pc),
            "err_pos": int(ref.err_pos), "n_done": int(ref.n_done)}


def rtl_fields(res):
    return {k: res[k] for k in ("status", "state", "err_pc", "err_pos", "n_done")}


def random_words(rng, n, bits, signed=True):
    """``n`` random values of ``bits`` bits with random bit lengths (small and large),
    including the extremes."""
    lens = rng.integers(0, bits + 1 - int(signed), n)
    v = np.array([int(rng.integers(0, 1 << int(b))) if b else 0 for b in lens], dtype=object)
    if signed:
        neg = rng.random(n) < 0.5
        v = np.where(neg, -v, v)
        ext = rng.random(n)
        v = np.where(ext < 0.03, -(1 << (bits - 1)), np.where(ext > 0.97, (1 << (bits - 1)) - 1, v))
    return [int(x) for x in v]


# --- random states ---------------------------------------------------------------------

SCALAR_SPACES = (Space.EMBS, Space.HEADS, Space.KVS)
READ_SPACES = (Space.VMEM, Space.TMEM, Space.EMB, Space.HEAD, Space.KVK, Space.KVV,
               Space.EMBS, Space.HEADS, Space.KVS, Space.TOKENS)
TWO_PORT = (Space.VMEM, Space.TMEM)


def random_scalar_words(rng, n, e_lo=-200, e_hi=200):
    m = rng.integers(1 << 15, 1 << 16, n)
    e = rng.integers(e_lo, e_hi, n)
    zero = rng.random(n) < 0.1
    m = np.where(zero, 0, m)
    e = np.where(zero, -1024, e)
    return [isa.scalar_word(int(a), int(b)) for a, b in zip(m, e)]


def random_images(rng, limits, *, vmem_bits=40, tokens_below=None):
    """Random contents of every readable space, as load words."""
    img = {}
    for sp in READ_SPACES:
        depth = limits.depth(sp)
        info = isa.SPACES[sp]
        if sp in SCALAR_SPACES:
            img[sp] = random_scalar_words(rng, depth)
        elif sp == Space.TOKENS:
            img[sp] = [int(v) for v in rng.integers(0, tokens_below or limits.vocab, depth)]
        elif sp == Space.VMEM:
            img[sp] = random_words(rng, depth, vmem_bits)
        else:
            img[sp] = random_words(rng, depth, info.word_bits)
    img[Space.SRINIT] = random_scalar_words(rng, limits.depth(Space.SRINIT))
    return img


def random_ir_values(rng):
    """IR[1..15]: small shifts, mid-size and full 48-bit values."""
    out = [0]
    for i in range(1, isa.IR_COUNT):
        kind = rng.integers(0, 3)
        if kind == 0:
            out.append(int(rng.integers(-24, 25)))
        elif kind == 1:
            out.append(int(rng.integers(-(1 << 20), 1 << 20)))
        elif i <= 3:
            out.append(int(rng.integers(-(1 << 47), 1 << 47)))
        else:
            out.append(int(rng.integers(-(1 << 31), 1 << 31)))
    return out


def dyn_fields(rng, pos, token, sel_choices):
    """Random dynamic address mode: (fields, offset for the chosen operand)."""
    sel = int(rng.choice(sel_choices))
    if sel == 0:
        return {}, 0, 0
    src = int(rng.integers(0, 2))
    k = int(rng.integers(0, 4))
    return {"dyn_sel": sel, "dyn_src": src, "dyn_k": k}, sel, ((token if src else pos) << k)


def place(rng, depth, n, offset=0, avoid=None):
    """A base address with ``base + offset + n <= depth`` whose range does not overlap
    ``avoid`` (a (lo, hi) range), or None."""
    for _ in range(50):
        hi = depth - n - offset
        if hi < 0:
            return None
        base = int(rng.integers(0, hi + 1))
        lo_, hi_ = base + offset, base + offset + n
        if avoid is None or hi_ <= avoid[0] or lo_ >= avoid[1] or n == 0:
            return base
    return None


# --- a VM with SDRAM (XFER) ------------------------------------------------------------


class XferRig(wiring.Component):
    """A VectorMachine with SDRAM: its ``sdram`` port is the testbench's (an
    :class:`SdramModel`), its ``wgt`` port writes a weight store (``store``) that a
    MatvecEngine with ``weight_source="stream"`` reads, from the base of each command the
    VM gives it, beside those writes (as the device's store takes XFER IN while a MATVEC
    reads its other half)."""

    def __init__(self, limits, engine_config):
        cfg = engine_config
        for name in ("rows", "cols"):
            v = getattr(cfg, name)
            assert v & (v - 1) == 0, f"the rig's tile count needs a power-of-two {name}"
        self.cfg = cfg
        self.vm = VectorMachine(limits, cfg)
        self.eng = MatvecEngine(cfg, weight_source="stream")
        self.store = memory.Memory(shape=8 * cfg.word_bytes, depth=cfg.weight_words, init=[])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        vm, eng, cfg = self.vm, self.eng, self.cfg
        m.submodules.vm, m.submodules.eng, m.submodules.store = vm, eng, self.store
        wiring.connect(m, vm.engine.cmd, eng.cmd)
        wiring.connect(m, vm.engine.acts, eng.acts)
        wiring.connect(m, eng.result, vm.engine.result)
        m.d.comb += vm.engine.busy.eq(eng.busy)
        wr, rd = self.store.write_port(), self.store.read_port(domain="comb")
        m.d.comb += [wr.addr.eq(vm.wgt.addr), wr.data.eq(vm.wgt.data), wr.en.eq(vm.wgt.en)]
        at, left = Signal.like(rd.addr), Signal(32)
        cmd = eng.cmd.payload
        rb, cb = cfg.rows.bit_length() - 1, cfg.cols.bit_length() - 1
        with m.If(eng.cmd.valid & eng.cmd.ready):
            m.d.sync += [at.eq(cmd.base),
                         left.eq(((cmd.m + cfg.rows - 1) >> rb) * ((cmd.k + cfg.cols - 1) >> cb))]
        m.d.comb += [rd.addr.eq(at), eng.wstream.payload.eq(rd.data),
                     eng.wstream.valid.eq(left != 0)]
        with m.If(eng.wstream.valid & eng.wstream.ready):
            m.d.sync += [at.eq(at + 1), left.eq(left - 1)]
        return m


class SdramModel:
    """The user side of rtl.sdram.controller.SdramStreams in Python, for a testbench
    (``background=True``): ``mem`` (uint64 words); read bursts answered in order after a
    random latency with random bubbles; write bursts as the BurstWriter takes them (a
    word only while its request is offered, the request with its last word), each word
    taken at random. Checks the stream rules on the port (a request, once offered, stays
    offered and unchanged until taken) and the addresses."""

    def __init__(self, rng, words, *, p_ready=0.7, p_bubble=0.3, latency=12):
        self.rng, self.mem = rng, np.array(words, dtype=np.uint64)
        self.p_ready, self.p_bubble, self.latency = p_ready, p_bubble, latency
        self.reads = self.writes = 0
        self.bursts = []               # ("read" / "write", addr, count) as taken

    async def run(self, ctx, port):
        rng, mem = self.rng, self.mem
        pending, due = [], 0           # read words not yet offered, (cycle due, word)
        offered = None                 # the read word on read_data
        taken = 0                      # words of the current write request taken
        last_req = {}
        cyc = 0
        while True:
            ctx.set(port.read_req.ready, int(rng.random() < self.p_ready))
            if offered is None and pending and pending[0][0] <= cyc and \
                    rng.random() >= self.p_bubble:
                offered = pending.pop(0)[1]
            ctx.set(port.read_data.valid, int(offered is not None))
            ctx.set(port.read_data.payload, offered or 0)
            w_valid = ctx.get(port.write_req.valid)
            w_take = bool(w_valid) and ctx.get(port.write_data.valid) and \
                rng.random() < self.p_ready
            ctx.set(port.write_data.ready, int(w_take))
            count = ctx.get(port.write_req.payload.count)
            ctx.set(port.write_req.ready, int(bool(w_valid) and taken + w_take == count))
            _, _, rq_v, rq_r, rq, rd_v, rd_r, wq_v, wq_r, wq, wd_v, wd_r, wd = \
                await ctx.tick().sample(
                    port.read_req.valid, port.read_req.ready, port.read_req.payload,
                    port.read_data.valid, port.read_data.ready, port.write_req.valid,
                    port.write_req.ready, port.write_req.payload, port.write_data.valid,
                    port.write_data.ready, port.write_data.payload)
            for name, v, r, p in (("read_req", rq_v, rq_r, rq), ("write_req", wq_v, wq_r, wq)):
                p = (int(p.addr), int(p.count))
                if name in last_req:
                    assert v and p == last_req[name], f"{name} withdrawn or changed before taken"
                    del last_req[name]
                if v and not r:
                    last_req[name] = p
                if v:
                    assert p[1] > 0 and p[0] + p[1] <= mem.size, f"{name} {p} outside the SDRAM"
            if rq_v and rq_r:
                a, n = int(rq.addr), int(rq.count)
                due = max(due, cyc + int(rng.integers(1, self.latency + 1)))
                pending += [(due, int(w)) for w in mem[a:a + n]]
                self.reads += 1
                self.bursts.append(("read", a, n))
            if rd_v and rd_r:
                offered = None
            if wd_v and wd_r:
                mem[int(wq.addr) + taken] = int(wd)
                taken += 1
            if wq_v and wq_r:
                assert taken == int(wq.count)
                taken = 0
                self.writes += 1
                self.bursts.append(("write", int(wq.addr), int(wq.count)))
            cyc += 1


def store_words(ctx, rig):
    """The rig's weight store, a word per entry (int, its little-endian bytes)."""
    return [int(ctx.get(rig.store.data[i])) for i in range(rig.store.depth)]
