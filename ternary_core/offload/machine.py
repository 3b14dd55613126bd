"""The functional reference of the whole-model device: a Python interpreter of the ISA
(docs/device-isa.md), instruction by instruction as the hardware computes it (widths,
rounding, saturation), with the arithmetic of :mod:`ternary_core.integer.fixed` (one
definition of each primitive). It counts nothing about time.

- :class:`Machine` holds the state (memories, registers, weight store) and runs a whole
  request (:meth:`Machine.run`), the "python device" of the host;
- :func:`execute` runs one instruction on a Machine's state, for the RTL's
  instruction-by-instruction tests (set ``pos``, ``token``, ``gen``, registers and
  memories at random, run one instruction on both, compare).

``strict`` (default on) also stops on anything the compiler should never emit (a MUL
operand past 18 bits, a DOT input past int8, a write that wraps): a TernaryError naming
the instruction. The RTL wraps such values silently; tests of random states use
``strict=False``.
"""

import numpy as np

from ..errors import TernaryError
from ..integer.fixed import (E_ZERO, Scalar, bit_length, exp2_neg, scalar_add, scalar_from_int,
                             scalar_mul, scalar_recip, scalar_rsqrt, scalar_shift,
                             shift_round_saturate, sigmoid_q15)
from ..integer.sampling import xorshift32
from .isa import (ATTN_SCORE_BITS, E_MAX, E_MIN, IR_BITS, IR_COUNT, MUL_Y_BITS,
                  RESULT_WORDS, RUN_PARAMS, SPACES, SR_COUNT, SR_INV_T, SW_E_BITS,
                  SW_M_BITS, AttnFn, Dyn, Op, Red, RunParams, RunResult,
                  SampleFn, SFn, Space, MachineStatus, SVFn, VFn, XFn, SDRAM_WORD_BYTES,
                  decode, encode, kv_scale_addr, to_signed, xfer_bytes, xfer_space)
from .compiler import compile_program
from .overlay import PC_LIMIT
from .limits import DEFAULT_ENGINE, DeviceLimits
from .memory_map import memory_images, weight_stacks
from .semantics import dyn_offset, element_count, runs, xfer_addresses

_SW_M_MASK = (1 << SW_M_BITS) - 1
_SW_E_MASK = (1 << SW_E_BITS) - 1
_IR_MASK = (1 << IR_BITS) - 1


class DeviceStop(Exception):
    """A device error (:class:`~.isa.MachineStatus`) that stops the run."""

    def __init__(self, status, msg=""):
        super().__init__(msg or MachineStatus(status).name)
        self.status = MachineStatus(status)


def _wrap(v, bits, signed=True):
    """Vectorized two's complement wrap of int64 ``v`` to ``bits``."""
    v = np.asarray(v, np.int64)
    if bits >= 64:
        return v
    mask = np.int64((1 << bits) - 1)
    if signed:
        half = np.int64(1 << (bits - 1))
        return ((v + half) & mask) - half
    return v & mask


def _ir_wrap(v):
    return to_signed(int(v), IR_BITS)


def _sw_unpack(words):
    """(m, e) int64 arrays of scalar words."""
    w = np.asarray(words, np.int64)
    m = w & _SW_M_MASK
    e = (w >> SW_M_BITS) & _SW_E_MASK
    e = np.where(e >= (1 << (SW_E_BITS - 1)), e - (1 << SW_E_BITS), e)
    return m, e


def _sw_pack(m, e):
    m, e = np.asarray(m, np.int64), np.asarray(e, np.int64)
    return m | ((e & _SW_E_MASK) << SW_M_BITS)


def _check_exp(m, e, where):
    m, e = np.asarray(m), np.asarray(e)
    bad = (m != 0) & ((e < E_MIN) | (e > E_MAX))
    if bad.any():
        raise DeviceStop(MachineStatus.SCALAR_OVF, f"scalar exponent overflow in {where}")


class Machine:
    """The device state: one int64 array per memory space (signed spaces hold
    sign-extended values, scalar-word spaces raw 28-bit words), ``ir`` (16 Python ints),
    ``sr_m``/``sr_e`` (256 each), ``pos``, ``token``, ``gen``, ``state``, ``top_k``, the
    program (decoded) and the engine's weight store (bytes, native layout)."""

    def __init__(self, limits=None, layout=None, strict=True):
        self.limits = limits or DeviceLimits()
        self.layout = layout or DEFAULT_ENGINE.layout
        self.strict = strict
        self.mem = {s: np.zeros(self.limits.depth(s), np.int64) for s in SPACES
                    if s not in (Space.PROG, Space.SDRAM)}
        self.prog = []
        self.names = []
        # a program streamed in segments (overlay.py): PROG's words as the device holds
        # them, and the whole program's, which every fetch checks them against
        self.prog_mem = np.zeros(2 * self.limits.prog_words if self.limits.sdram else 0, np.uint64)
        self.prog_words = None
        # uploaded as PROG words (load) on a device with SDRAM: every fetch decodes PROG's
        # words at pc % prog_words, as the device does (the program may stream through it)
        self._from_mem, self._decoded = False, {}
        self.weights = np.zeros(self.limits.weight_words * self.layout.word_bytes, np.uint8)
        # the SDRAM as bytes (little-endian 64-bit words) and the transfer that runs, as
        # (XFn, on-chip space, first word, end word, name) until WAIT or END
        self.sdram = np.zeros(self.limits.sdram_words * SDRAM_WORD_BYTES, np.uint8)
        self.xfer = None
        self._wcache = {}
        self.ir = [0] * IR_COUNT
        self.sr_m = [0] * SR_COUNT
        self.sr_e = [0] * SR_COUNT
        self.pos = self.token = self.gen = self.state = self.top_k = 0
        self.pc = 0

    @classmethod
    def for_model(cls, im, limits=None, engine=None, strict=True, **compile_kw):
        """A Machine with ``im`` compiled (``compile_kw``: of
        :func:`~.compiler.compile_program`) and uploaded (program, images, weights):
        returns ``(machine, program)``."""
        engine = engine or DEFAULT_ENGINE
        limits = limits or DeviceLimits.for_config(im.config, im.max_len).with_engine(engine)
        program = compile_program(im, limits, engine=engine, **compile_kw)
        mc = cls(limits, engine.layout, strict=strict)
        for space, words in memory_images(im, program).items():
            if space != Space.PROG:
                mc.load(space, words)
        mc.load_program(program)
        for st in weight_stacks(im, limits, engine):
            mc.write_weights(st.base, st.packed)
        return mc, program

    def generate(self, ids, n_new, pos0=0, state=0, inv_t=(0, 0), top_k=0, **kw):
        """Write ``ids`` to TOKENS from ``pos0`` and run; returns ``(new ids, RunResult)``."""
        ids = [int(t) for t in ids]
        self.load(Space.TOKENS, ids, pos0)
        res = self.run(RunParams(pos0=pos0, n_feed=len(ids), n_new=n_new, state=state,
                                 inv_t_m=int(inv_t[0]), inv_t_e=int(inv_t[1]), top_k=top_k), **kw)
        at = pos0 + len(ids)
        return [int(t) for t in self.mem[Space.TOKENS][at:at + res.n_done]], res

    # ---- uploads
    def load(self, space, words, addr=0):
        """Write ``words`` into ``space`` from ``addr`` (as the ``load`` stream does)."""
        space = Space(space)
        if space == Space.PROG:
            from .isa import prog_unwords
            words = [int(w) for w in words]
            if addr % 2 or len(words) % 2:
                raise TernaryError("PROG: load whole instructions (two 64-bit words each)")
            ins = prog_unwords(words)
            at = addr // 2
            if at + len(ins) > self.limits.prog_words:
                raise TernaryError(f"PROG: {at + len(ins)} instructions; prog_words limit is "
                                   f"{self.limits.prog_words}")
            self.prog[at:at + len(ins)] = ins
            self.names[at:at + len(ins)] = [""] * len(ins)
            if self.limits.sdram:       # (fetched from PROG's words: see step)
                self.prog_mem[addr:addr + len(words)] = np.array(words, np.uint64)
                self.prog_words, self._from_mem = None, True
            return
        if space == Space.SDRAM:
            if not isinstance(words, np.ndarray):
                words = [int(w) for w in words]
            data = np.ascontiguousarray(words, "<u8").view(np.uint8)
            at = int(addr) * SDRAM_WORD_BYTES
            if addr < 0 or at + data.size > self.sdram.size:
                raise TernaryError(f"SDRAM: words {addr}..{addr + data.size // 8 - 1} are past "
                                   f"its depth {self.limits.sdram_words}")
            self.sdram[at:at + data.size] = data
            return
        info = SPACES[space]
        mem = self.mem[space]
        words = np.asarray(words, np.int64)
        if addr < 0 or addr + words.size > mem.size:
            raise TernaryError(f"{space.name}: words {addr}..{addr + words.size - 1} are past its "
                               f"depth {mem.size}")
        mem[addr:addr + words.size] = _wrap(words, info.word_bits, info.signed)

    def load_program(self, program):
        """The compiled program, keeping its instruction names (for --check). A program
        longer than PROG (``program.segmented``) streams from the SDRAM: PROG gets its
        segment 0 (the first ``prog_words / 2`` instructions, as the upload does; its SDRAM
        image, :func:`~.memory_map.memory_images`, is loaded with the others)."""
        self.prog_words, self._from_mem = None, False
        if program.segmented and self.limits.sdram:
            words = [int(w) for w in program.words()]
            image = program.prog_image(words)
            self.prog_mem[:] = 0
            self.prog_mem[:len(image)] = image
            self.prog_words = np.array(words, np.uint64)
        elif len(program.instrs) > self.limits.prog_words:
            raise TernaryError(f"PROG: {len(program.instrs)} instructions; prog_words limit is "
                               f"{self.limits.prog_words}")
        self.prog = list(program.instrs)
        self.names = program.names

    def write_weights(self, word, data):
        """Engine weight store: packed bytes from word address ``word``."""
        data = np.frombuffer(bytes(data), np.uint8)
        at = word * self.layout.word_bytes
        if at + data.size > self.weights.size:
            raise TernaryError(f"weights: words past the store's {self.limits.weight_words}")
        self.weights[at:at + data.size] = data
        self._wcache.clear()

    def peek(self, space, addr):
        """One word of a space as the ``peek`` port returns it (unsigned, its word bits)."""
        space = Space(space)
        if space == Space.PROG:
            if addr // 2 >= len(self.prog):
                return 0
            w = encode(self.prog[addr // 2])
            return (w >> 64) if addr % 2 else w & ((1 << 64) - 1)
        if space == Space.SDRAM:
            if not 0 <= addr < self.limits.sdram_words:
                raise TernaryError(f"SDRAM: address {addr} is past its depth "
                                   f"{self.limits.sdram_words}")
            return int(self.sdram[addr * 8:addr * 8 + 8].view(np.uint64)[0])
        mem = self.mem[space]
        if not 0 <= addr < mem.size:
            raise TernaryError(f"{space.name}: address {addr} is past its depth {mem.size}")
        return int(mem[addr]) & ((1 << SPACES[space].word_bits) - 1)

    def run_param(self, **kw):
        """A run whose parameters are PARAM words 0..6 (:data:`~.isa.PARAM_WORDS`); the
        result goes to PARAM words 8..13 (:data:`~.isa.RESULT_WORDS`) and is returned."""
        words = self.mem[Space.PARAM]
        vals = {n: int(words[i]) & ((1 << b) - 1) for i, (n, b, _) in enumerate(RUN_PARAMS)}
        vals["inv_t_e"] = to_signed(vals["inv_t_e"], 16)
        res = self.run(RunParams(**vals), **kw)
        for name, i in RESULT_WORDS.items():
            words[i] = int(getattr(res, name)) & 0xFFFFFFFF
        return res

    # ---- registers
    def set_sr(self, i, m, e, where="SR write"):
        m, e = int(m), int(e)
        if m and not E_MIN <= e <= E_MAX:
            raise DeviceStop(MachineStatus.SCALAR_OVF, f"scalar exponent overflow in {where}")
        if 0 <= i < SR_COUNT:
            self.sr_m[i], self.sr_e[i] = m, e

    def set_ir(self, i, v):
        if i:
            self.ir[i] = _ir_wrap(v)

    def scalar(self, i):
        return Scalar(np.int64(self.sr_m[i]), np.int64(self.sr_e[i]))

    # ---- a request
    def run(self, params, on_instr=None, on_step=None):
        """One ``run`` request (docs/device-isa.md, "Run semantics"); returns a
        :class:`~.isa.RunResult`. ``on_instr(machine, pc, instr)`` after each executed
        instruction and ``on_step(machine, pos)`` after each step are for ``--check``."""
        p = params if isinstance(params, RunParams) else RunParams(**params)
        lim = self.limits
        last = p.pos0 + p.n_feed + p.n_new - 1
        if p.n_feed < 1 or p.n_new < 1 or last > lim.context or p.pos0 < 0:
            return RunResult(status=MachineStatus.BAD_PARAMS, cycles=0, state=p.state & 0xFFFFFFFF)
        # a zero inv_t (greedy) is the canonical zero whatever its exponent field says
        self.sr_m[SR_INV_T] = p.inv_t_m
        self.sr_e[SR_INV_T] = to_signed(p.inv_t_e, 16) if p.inv_t_m else E_ZERO
        init = self.mem[Space.SRINIT]
        m, e = _sw_unpack(init)
        for i in range(1, min(SR_COUNT, init.size)):
            self.sr_m[i], self.sr_e[i] = int(m[i]), int(e[i])
        self.state, self.top_k = p.state & 0xFFFFFFFF, p.top_k
        done = 0
        for pos in range(p.pos0, last):
            self.pos = pos
            self.token = int(self.mem[Space.TOKENS][pos])
            self.gen = int(pos >= p.pos0 + p.n_feed - 1)
            try:
                self.step(on_instr)
            except DeviceStop as stop:
                return RunResult(status=stop.status, cycles=0, state=self.state, err_pc=self.pc,
                                 err_pos=pos, n_done=done)
            self.mem[Space.CYCLES][pos] = 0
            done += self.gen
            if on_step is not None:
                on_step(self, pos)
        return RunResult(status=MachineStatus.OK, cycles=0, state=self.state, n_done=done)

    def step(self, on_instr=None):
        """Run the program once (the step at ``self.pos``) until END."""
        self.pc = 0
        self.xfer = None        # a run stopped by an error left its transfer to finish
        prog = self.prog
        while True:
            if self._from_mem:
                ins = self._fetch_mem()
            else:
                if self.pc >= len(prog):
                    raise DeviceStop(MachineStatus.PROG_END)
                ins = prog[self.pc]
                if self.prog_words is not None:
                    self._fetch_check()
            if execute(self, ins):
                self.xfer = None            # END waits for the transfer
                return
            if on_instr is not None:
                on_instr(self, self.pc, ins)
            self.pc += 1

    def _prog_slot(self):
        """PROG's first word of the instruction at ``pc`` (``pc % prog_words``), once no
        transfer writes it."""
        at = 2 * (self.pc % self.limits.prog_words)
        _hazard(self, Space.PROG, at, at + 2, False, f"pc {self.pc}")
        return at

    def _fetch_mem(self):
        """The instruction in PROG's words at ``pc % prog_words`` (PROG_END at pc 2**16)."""
        if self.pc >= PC_LIMIT:
            self.pc %= PC_LIMIT             # (the RTL's 16-bit pc)
            raise DeviceStop(MachineStatus.PROG_END)
        at = self._prog_slot()
        key = (int(self.prog_mem[at]), int(self.prog_mem[at + 1]))
        ins = self._decoded.get(key)
        if ins is None:
            ins = self._decoded[key] = decode(key[0] | (key[1] << 64))
        return ins

    def _fetch_check(self):
        """A segmented program: the instruction at ``pc`` must be in PROG (at ``pc %
        prog_words``), brought in by a transfer that has finished."""
        at = self._prog_slot()
        if not np.array_equal(self.prog_mem[at:at + 2], self.prog_words[2 * self.pc:2 * self.pc + 2]):
            raise TernaryError(f"pc {self.pc}: PROG words {at}..{at + 1} hold another instruction (the "
                               f"program's segment is not there)")

    # ---- matvec engine
    def matvec(self, base, m, k):
        key = (base, m, k)
        _hazard(self, Space.WGT, base, base + self.layout.words(m, k), False, "MATVEC")
        w = self._wcache.get(key)
        if w is None:
            lay = self.layout
            nbytes = lay.words(m, k) * lay.word_bytes
            at = base * lay.word_bytes
            if at + nbytes > self.weights.size:
                raise TernaryError(f"MATVEC: words {base}.. past the weight store")
            w = lay.unpack(self.weights[at:at + nbytes], m, k).astype(np.float64)
            self._wcache[key] = w
        x = self.mem[Space.ACT][:k].astype(np.float64)
        return (w @ x).astype(np.int64)     # |sum| < 2**53: exact


# ---------------------------------------------------------------------------------------

def _n(ins, mc):
    return element_count(ins, mc.pos)


def _dyn(ins, mc, sel):
    return dyn_offset(ins, sel, mc.pos, mc.token)


def _read(mc, space, addr, n, what, ins):
    space = Space(space)
    if space not in mc.mem or space in (Space.ACT, Space.CYCLES, Space.PARAM):
        raise TernaryError(f"{ins.name or ins.op.name}: {what} cannot read space {space.name}")
    mem = mc.mem[space]
    if addr < 0 or addr + n > mem.size:
        raise TernaryError(f"{ins.name or ins.op.name}: {what} reads {space.name} "
                           f"{addr}..{addr + n - 1}, past its depth {mem.size}")
    single = mc.limits.vmem_words
    if (space == Space.VMEM and addr + n > single and mc.limits.vmem_single
            and not _reads_port0(ins, what)):
        raise TernaryError(f"{ins.name or ins.op.name}: {what} reads VMEM {addr}..{addr + n - 1}, "
                           f"in the single-copy bank from {single}, which only operand A of "
                           f"an element pass or a SAMPLE reads")
    _hazard(mc, space, addr, addr + n, False, ins.name or ins.op.name)
    return mem[addr:addr + n]


def _reads_port0(ins, what):
    """Whether the read ``what`` of ``ins`` is one the RTL makes on VMEM's read port 0,
    the only one of its single-copy bank: operand A of an element pass but ROT (which
    reads A's pairs on both ports), of an SVOP, of a SAMPLE (whose TOPK also rewrites D)."""
    if ins.op == Op.VOP:
        return what == "A" and ins.fn != VFn.ROT
    return (ins.op == Op.SVOP and what == "A") or (ins.op == Op.SAMPLE and what in ("A", "D"))


def _write(mc, space, addr, values, ins, what="D"):
    space = Space(space)
    info = SPACES.get(space)
    if info is None or not info.writable_by_program or space not in mc.mem:
        raise TernaryError(f"{ins.name or ins.op.name}: {what} cannot write space {space.name}")
    mem = mc.mem[space]
    values = np.asarray(values, np.int64)
    if addr < 0 or addr + values.size > mem.size:
        raise TernaryError(f"{ins.name or ins.op.name}: {what} writes {space.name} "
                           f"{addr}..{addr + values.size - 1}, past its depth {mem.size}")
    _hazard(mc, space, addr, addr + values.size, True, ins.name or ins.op.name)
    w = _wrap(values, info.word_bits, info.signed)
    if mc.strict and not np.array_equal(w, values):
        raise TernaryError(f"{ins.name or ins.op.name}: a value does not fit {space.name}'s "
                           f"{info.word_bits} bits")
    mem[addr:addr + values.size] = w


def _y18(y, mc, ins):
    y18 = _wrap(y, MUL_Y_BITS)
    if mc.strict and not np.array_equal(y18, y):
        raise TernaryError(f"{ins.name}: a {VFn(ins.fn).name} operand does not fit "
                           f"{MUL_Y_BITS} bits")
    return y18


def _reduce(red, out, rbits):
    n = out.size
    if red == Red.MAXABS:
        return int(np.abs(out).max()) if n else 0
    if red == Red.NORM:
        return int(bit_length(np.abs(out).max() if n else 0)) - (rbits - 1)
    if red == Red.SUM:
        return int(out.sum())
    if red == Red.SUMSQ:
        if n and int(np.abs(out).max()) >= 1 << 24:
            return sum(int(v) * int(v) for v in out)
        return int((out * out).sum())
    if red == Red.MAX:
        return int(out.max()) if n else -(1 << (IR_BITS - 1))
    if red == Red.ARGMAX:
        return int(np.argmax(out)) if n else 0
    raise TernaryError(f"reduction {red} is not defined for VOP")


def _fn(enum, ins):
    try:
        return enum(ins.fn)
    except ValueError:
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"{ins.op.name} fn {ins.fn}") from None


def _vop(mc, ins):
    n = _n(ins, mc)
    fn = _fn(VFn, ins)
    x = _read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), n, "A", ins)
    bsp = Space(ins.b_space)
    ye = 0
    half = n >> 1
    if bsp == Space.SR:
        ym, ye = mc.sr_m[ins.b_addr], mc.sr_e[ins.b_addr]
        y = np.int64(ym)
        if fn != VFn.MULS:
            raise TernaryError(f"{ins.name}: B = SR needs MULS")
    elif bsp == Space.IR:
        y = np.int64(mc.ir[ins.b_addr])
    elif bsp == Space.NONE:
        y = np.int64(0)
    elif fn == VFn.ROT:
        y = _read(mc, bsp, ins.b_addr + _dyn(ins, mc, Dyn.B), 2 * half, "B", ins)
    else:
        y = _read(mc, bsp, ins.b_addr + _dyn(ins, mc, Dyn.B), n, "B", ins)
        if fn == VFn.MULS:
            y, ye = _sw_unpack(y)
    if fn == VFn.PASS:
        v = x
    elif fn == VFn.PASSR:
        v = np.maximum(x, 0)
    elif fn == VFn.MUL:
        v = x * _y18(y, mc, ins)
    elif fn == VFn.MULS:
        v = x * y
    elif fn == VFn.ADD:
        v = x + y
    elif fn == VFn.SUB:
        v = x - y
    elif fn == VFn.RSUB:
        v = y - x
    elif fn == VFn.ROT:
        if n % 2:
            raise TernaryError(f"{ins.name}: ROT needs an even n")
        y = _y18(y, mc, ins)
        c, s = np.tile(y[:half], 2), np.tile(y[half:2 * half], 2)
        partner = np.concatenate([x[half:], x[:half]])
        sign = np.concatenate([-np.ones(half, np.int64), np.ones(half, np.int64)])
        v = x * c + sign * partner * s
    elif fn == VFn.EXP2:
        v = exp2_neg(np.clip(y - x, 0, 1 << 30))
    elif fn == VFn.EXP2X:
        v = exp2_neg(np.clip(x + y, 0, 1 << 30))
    elif fn == VFn.SIGMUL:
        v = _y18(x, mc, ins) * sigmoid_q15(y)
    else:
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"VOP fn {ins.fn}")
    sh = ins.sh_imm + mc.ir[ins.sh_ir] - (ye if fn == VFn.MULS else 0)
    bits = ins.bits
    out = shift_round_saturate(v, sh, bits)
    if ins.sym:
        out = np.maximum(out, -((1 << (bits - 1)) - 1))
    out = np.broadcast_to(out, (n,))
    if ins.d_space != Space.NONE:
        _write(mc, ins.d_space, ins.d_addr + _dyn(ins, mc, Dyn.D), out, ins)
    if ins.red != Red.NONE:
        mc.set_ir(ins.red_ir, _reduce(Red(ins.red), out, ins.rbits))


def _svop(mc, ins):
    n = _n(ins, mc)
    xm, xe = _sw_unpack(_read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), n, "A", ins))
    fn = _fn(SVFn, ins)
    if fn in (SVFn.SMUL, SVFn.SMUL2):
        if ins.b_space == Space.SR:
            ym, ye = np.int64(mc.sr_m[ins.b_addr]), np.int64(mc.sr_e[ins.b_addr])
        else:
            b = _read(mc, ins.b_space, ins.b_addr + _dyn(ins, mc, Dyn.B), n, "B", ins)
            ym, ye = _sw_unpack(b)
        r = scalar_mul(Scalar(xm, xe), Scalar(ym, ye))
        _check_exp(r.m, r.e, ins.name or "SVOP")
        if fn == SVFn.SMUL2:
            r = scalar_mul(r, Scalar(np.int64(mc.sr_m[ins.b2]), np.int64(mc.sr_e[ins.b2])))
            _check_exp(r.m, r.e, ins.name or "SVOP")
        _write(mc, ins.d_space, ins.d_addr + _dyn(ins, mc, Dyn.D),
               np.broadcast_to(_sw_pack(r.m, r.e), (n,)), ins)
    elif fn != SVFn.MAXE:
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"SVOP fn {ins.fn}")
    if ins.red == Red.MAXE:
        mc.set_ir(ins.red_ir, int(xe.max()) if n else E_MIN)
    elif ins.red != Red.NONE:
        raise TernaryError(f"{ins.name}: SVOP reduces only with MAXE")


def _sop(mc, ins):
    fn = ins.fn
    ir, d, a, b = mc.ir, ins.d, ins.a, ins.b
    where = ins.name or "SOP"
    if fn == SFn.NOP:
        return
    if fn in (SFn.FROM_INT, SFn.MUL, SFn.ADD, SFn.SHIFT, SFn.RECIP, SFn.RSQRT):
        if fn == SFn.FROM_INT:
            x = ir[a] + ins.imm
            if x < 0:
                raise DeviceStop(MachineStatus.SCALAR_OVF, f"from_int of a negative integer in {where}")
            r = scalar_from_int(np.int64(x), np.int64(ir[b]))
        elif fn == SFn.MUL:
            r = scalar_mul(mc.scalar(a), mc.scalar(b))
        elif fn == SFn.ADD:
            r = scalar_add(mc.scalar(a), mc.scalar(b))
        elif fn == SFn.SHIFT:
            r = scalar_shift(mc.scalar(a), np.int64(ir[b] + ins.imm))
        elif fn == SFn.RECIP:
            r = scalar_recip(mc.scalar(a))
        else:
            r = scalar_rsqrt(mc.scalar(a))
        mc.set_sr(d, r.m, r.e, where)
    elif fn == SFn.LOAD:
        w = _read(mc, ins.s_space, ins.s_addr + (_dyn(ins, mc, ins.dyn_sel) if ins.dyn_sel else 0),
                  1, "LOAD", ins)
        m, e = _sw_unpack(w[0])
        mc.set_sr(d, m, e, where)
    elif fn == SFn.STORE:
        _write(mc, ins.s_space, ins.s_addr + (_dyn(ins, mc, ins.dyn_sel) if ins.dyn_sel else 0),
               [int(_sw_pack(mc.sr_m[a], mc.sr_e[a]))], ins, "STORE")
    elif fn == SFn.IADD:
        mc.set_ir(d, ir[a] + ir[b] + ins.imm)
    elif fn == SFn.IMAXE:
        live = mc.sr_m[a] != 0 and ir[b] != 0
        mc.set_ir(d, max(ir[ins.c], mc.sr_e[a]) if live else ir[ins.c])
    else:
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"SOP fn {fn}")


def _rows(mc, ins, n):
    """(n, len) int64 rows of B at b_addr + (r << stride)."""
    space = Space(ins.b_space)
    if space not in (Space.EMB, Space.HEAD, Space.KVK, Space.KVV):
        raise TernaryError(f"{ins.name}: rows must come from EMB, HEAD, KVK or KVV")
    base = ins.b_addr + _dyn(ins, mc, Dyn.B)
    stride = 1 << ins.stride
    if base % stride or ins.len > stride:
        raise TernaryError(f"{ins.name}: rows must be aligned to the stride and fit it")
    mem = mc.mem[space]
    if base + n * stride > mem.size:
        raise TernaryError(f"{ins.name}: rows past {space.name}'s depth {mem.size}")
    _hazard(mc, space, base, base + n * stride, False, ins.name)
    return mem[base:base + n * stride].reshape(n, stride)[:, :ins.len]


def _dot(mc, ins):
    n = _n(ins, mc)
    q = _read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), ins.len, "Q", ins)
    q8 = _wrap(q, 8)
    if mc.strict and not np.array_equal(q8, q):
        raise TernaryError(f"{ins.name}: a DOT input does not fit int8")
    rows = _rows(mc, ins, n)
    out = (rows.astype(np.float64) @ q8.astype(np.float64)).astype(np.int64)
    _write(mc, ins.d_space, ins.d_addr + _dyn(ins, mc, Dyn.D), out, ins)


def _axpy(mc, ins):
    n = _n(ins, mc)
    w = _read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), n, "W", ins)
    w18 = _wrap(w, MUL_Y_BITS)
    if mc.strict and not np.array_equal(w18, w):
        raise TernaryError(f"{ins.name}: an AXPY weight does not fit {MUL_Y_BITS} bits")
    rows = _rows(mc, ins, n)
    out = (w18.astype(np.float64) @ rows.astype(np.float64)).astype(np.int64)  # < 2**53
    _write(mc, ins.d_space, ins.d_addr + _dyn(ins, mc, Dyn.D), out, ins)


def _matvec(mc, ins):
    out = mc.matvec(ins.base, ins.m, ins.k)
    _write(mc, ins.d_space, ins.d_addr, out, ins)


def _sample(mc, ins):
    fn = ins.fn
    n = _n(ins, mc)
    if fn == SampleFn.TOPK:
        k = mc.top_k
        if 0 < k < n:
            a = _read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), n, "A", ins)
            order = np.lexsort((np.arange(n), -a))
            drop = order[k:]
            dst = ins.d_addr + _dyn(ins, mc, Dyn.D)
            cur = _read(mc, ins.d_space, dst, n, "D", ins).copy()
            cur[drop] = 0
            _write(mc, ins.d_space, dst, cur, ins)
    elif fn == SampleFn.DRAW:
        w = _read(mc, ins.a_space, ins.a_addr + _dyn(ins, mc, Dyn.A), n, "A", ins)
        mc.state = xorshift32(mc.state)
        total = mc.ir[ins.ir_a]
        r = (mc.state * total) >> 32
        mc.set_ir(ins.ir_d, int(np.searchsorted(np.cumsum(w), r, side="right")))
    elif fn == SampleFn.EMIT:
        t = mc.ir[ins.ir_a]
        if not 0 <= t < n:
            raise DeviceStop(MachineStatus.BAD_TOKEN, f"id {t} >= {n}")
        _write(mc, Space.TOKENS, mc.pos + 1, [t], ins, "EMIT")
    elif fn == SampleFn.TCHECK:
        if not 0 <= mc.token < n:
            raise DeviceStop(MachineStatus.BAD_TOKEN, f"token {mc.token} >= {n}")
    else:
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"SAMPLE fn {fn}")


def _attn(mc, ins):
    n = _n(ins, mc)
    fn = _fn(AttnFn, ins)
    if Space(ins.b_space) != (Space.KVK if fn == AttnFn.SCORES else Space.KVV):
        raise TernaryError(f"{ins.name}: ATTN {fn.name} rows must be "
                           f"{'KVK' if fn == AttnFn.SCORES else 'KVV'}")
    rows = _rows(mc, ins, n)
    if fn == AttnFn.SCORES:
        q = _read(mc, ins.a_space, ins.a_addr, ins.len, "Q", ins)
        q8 = _wrap(q, 8)
        if mc.strict and not np.array_equal(q8, q):
            raise TernaryError(f"{ins.name}: a query value does not fit int8")
        dot = (rows.astype(np.float64) @ q8.astype(np.float64)).astype(np.int64)
        cm, ce = _sw_unpack(_read(mc, ins.d_space, ins.d_addr, n, "D", ins))
        z = shift_round_saturate(dot * cm, ins.sh_imm - ce, ATTN_SCORE_BITS)
        _write(mc, ins.d_space, ins.d_addr, z, ins)
        mc.set_ir(ins.red_ir, _reduce(Red.MAX, z, 0))
    else:
        z = _read(mc, ins.a_space, ins.a_addr, n, "A", ins)
        e = exp2_neg(np.clip(mc.ir[ins.ir_b] - z, 0, 1 << 30))
        at = kv_scale_addr(mc.limits, ins.b_addr, ins.stride, 1)
        vm, ve = _sw_unpack(_read(mc, Space.KVS, at, n, "V scales", ins))
        w = shift_round_saturate(e * vm, ins.sh_imm + mc.ir[ins.sh_ir] - ve, MUL_Y_BITS)
        acc = (w.astype(np.float64) @ rows.astype(np.float64)).astype(np.int64)
        _write(mc, ins.d_space, ins.d_addr, acc, ins)
        mc.set_ir(ins.red_ir, int(e.sum()))


def _hazard(mc, space, lo, hi, writes, name):
    """A TernaryError if an access of ``space`` words ``[lo, hi)`` meets the running
    transfer's on-chip words (which an IN writes and an OUT reads while the VM goes on):
    the hardware would read or write them at an undefined point of the transfer."""
    x = mc.xfer
    if x is None or x[1] != space or hi <= x[2] or x[3] <= lo or lo == hi or x[2] == x[3]:
        return
    if x[0] == XFn.IN or writes:
        raise TernaryError(f"{name}: {'writes' if writes else 'reads'} {Space(space).name} "
                           f"{lo}..{hi - 1} while the transfer '{x[4]}' "
                           f"{'writes' if x[0] == XFn.IN else 'reads'} {x[2]}..{x[3] - 1} "
                           f"(a WAIT is missing)")


def _xfer(mc, ins):
    """XFER: the whole transfer happens now; its on-chip words stay in ``mc.xfer``
    (checked by every access, :func:`_hazard`) until the next XFER, WAIT or END."""
    name = ins.name or "XFER"
    if not mc.limits.sdram:                 # (an opcode only of a machine with SDRAM)
        raise DeviceStop(MachineStatus.BAD_OPCODE, f"{name}: XFER on a device without SDRAM")
    fn = _fn(XFn, ins)
    mc.xfer = None                          # IN and OUT wait for the transfer before them
    if fn == XFn.WAIT:
        return
    n = element_count(ins, mc.pos)
    c_addr, s_addr = xfer_addresses(ins, mc.pos, mc.token)
    space = xfer_space(ins.c_space)
    per = xfer_bytes(space, mc.layout.word_bytes)
    if space == Space.WGT and fn == XFn.OUT:
        raise TernaryError(f"{name}: XFER OUT of WGT is not defined (the store is read by MATVEC)")
    nbytes = n * SDRAM_WORD_BYTES
    if (c_addr * per) % SDRAM_WORD_BYTES or nbytes % per:
        raise TernaryError(f"{name}: {n} SDRAM words from {space.name} word {c_addr} are not "
                           f"whole words of {per} bytes starting an SDRAM word")
    words = nbytes // per
    if s_addr < 0 or s_addr + n > mc.limits.sdram_words:
        raise TernaryError(f"{name}: SDRAM words {s_addr}..{s_addr + n - 1} are past its depth "
                           f"{mc.limits.sdram_words}")
    sd = mc.sdram[s_addr * 8:(s_addr + n) * 8]
    if space == Space.PROG:
        if fn != XFn.IN:
            raise TernaryError(f"{name}: XFER OUT of PROG is not defined")
        if c_addr < 0 or c_addr + words > mc.prog_mem.size:
            raise TernaryError(f"{name}: PROG words {c_addr}..{c_addr + words - 1} are past its "
                               f"depth {mc.prog_mem.size}")
        mc.prog_mem[c_addr:c_addr + words] = sd.view("<u8")
    elif space == Space.WGT:
        at = c_addr * per
        if at + nbytes > mc.weights.size:
            raise TernaryError(f"{name}: WGT words {c_addr}..{c_addr + words - 1} are past the "
                               f"store's {mc.limits.weight_words}")
        if fn == XFn.IN:
            mc.weights[at:at + nbytes] = sd
            mc._wcache.clear()
        else:
            sd[:] = mc.weights[at:at + nbytes]
    else:
        info, mem = SPACES[space], mc.mem[space]
        if c_addr < 0 or c_addr + words > mem.size:
            raise TernaryError(f"{name}: {space.name} words {c_addr}..{c_addr + words - 1} are "
                               f"past its depth {mem.size}")
        if fn == XFn.IN:
            raw = sd.view(f"<u{per}").astype(np.int64) if per < 8 else \
                (sd.view("<u8") & np.uint64((1 << info.word_bits) - 1)).astype(np.int64)
            mem[c_addr:c_addr + words] = _wrap(raw, info.word_bits, info.signed)
        else:
            v = mem[c_addr:c_addr + words] & ((1 << info.word_bits) - 1)
            sd[:] = v.astype(f"<u{per}").view(np.uint8)
    mc.xfer = (fn, space, c_addr, c_addr + words, name)


_EXEC = {Op.XFER: _xfer, Op.ATTN: _attn, Op.VOP: _vop, Op.SVOP: _svop, Op.SOP: _sop, Op.DOT: _dot, Op.AXPY: _axpy,
         Op.MATVEC: _matvec, Op.SAMPLE: _sample}


def execute(mc, ins):
    """Run one instruction (an :class:`~.isa.Instr`, or its 128-bit integer) on the
    Machine ``mc``: honours ``cond`` and ``gen_only``; returns True for END. Device
    errors raise :class:`DeviceStop` (its ``status``)."""
    if not hasattr(ins, "op"):
        try:
            ins = decode(ins)
        except TernaryError:
            raise DeviceStop(MachineStatus.BAD_OPCODE) from None
    if ins.op == Op.END:
        return True
    if not runs(ins, gen=mc.gen, sampled=mc.sr_m[SR_INV_T] != 0):
        return False
    f = _EXEC.get(ins.op)
    if f is not None:
        f(mc, ins)
    return False
