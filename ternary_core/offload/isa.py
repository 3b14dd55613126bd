"""The instruction set of the whole-model device (issue 12): THE single definition of the
opcodes, the 128-bit instruction encoding, the memory spaces, the register files, the
device limits and the run parameters. docs/device-isa.md is its prose form (one table per
instruction class with the exact semantics); :mod:`.machine` is its executable form.

Stability: after the first commit only additions are allowed (new opcodes, new function
codes, fields in bits that are free in a class); nothing is renumbered or moved.

Every instruction is 128 bits. Bits 3..0 are the class (:class:`Op`), bits 7..4 the
function within the class, bit 127 ``gen_only`` (skip the instruction in a step whose next
token is already known, i.e. while feeding a prompt) and bits 126..125 ``cond`` (skip
unless the run is greedy / sampled: :class:`Cond`). The other fields sit at fixed
positions per class (:data:`LAYOUTS`); the classes that stream over vectors (VOP, SVOP,
DOT, AXPY, SAMPLE) share the positions of ``n``, the A, B and D operands and the dynamic
address mode, so one decoder serves them.

In the upload path (the ``load`` stream of the VM) a PROG word is 64 bits: instruction
``i`` is PROG words ``2i`` (bits 63..0) and ``2i+1`` (bits 127..64).
"""

from dataclasses import dataclass, fields as dc_fields
from enum import IntEnum, IntFlag
from typing import NamedTuple

from ..errors import TernaryError

INSTR_BITS = 128
PROG_WORD_BITS = 64

# ---- number formats --------------------------------------------------------------------

VMEM_BITS = 40          # VMEM words: signed 40-bit integers (or scalar words, below)
IR_BITS = 48            # integer registers: signed 48-bit
ADDR_BITS = 18          # element address of an operand within its space
MUL_Y_BITS = 18         # the B operand of MUL / ROT is taken as its low 18 bits, signed
DOT_LANES = 32          # int8 x int8 MACs of DOT and AXPY (cost model, row alignment)
SW_M_BITS = 16          # scalar word: mantissa u16 in bits 15..0
SW_E_BITS = 12          # ... exponent s12 in bits 27..16
SW_BITS = SW_M_BITS + SW_E_BITS
E_MIN, E_MAX = -(1 << (SW_E_BITS - 1)), (1 << (SW_E_BITS - 1)) - 1
TOKEN_BITS = 16


def scalar_word(m, e):
    """Pack a scalar ``m * 2**e`` into a 28-bit scalar word (``e`` must fit s12)."""
    m, e = int(m), int(e)
    if not 0 <= m < (1 << SW_M_BITS):
        raise TernaryError(f"scalar mantissa {m} does not fit u{SW_M_BITS}")
    if not E_MIN <= e <= E_MAX:
        raise TernaryError(f"scalar exponent {e} does not fit s{SW_E_BITS} ({E_MIN}..{E_MAX})")
    return m | ((e & ((1 << SW_E_BITS) - 1)) << SW_M_BITS)


def scalar_unword(w):
    """``(m, e)`` of a scalar word (the low 28 bits of ``w``)."""
    w = int(w)
    m = w & ((1 << SW_M_BITS) - 1)
    e = (w >> SW_M_BITS) & ((1 << SW_E_BITS) - 1)
    return m, e - (1 << SW_E_BITS) if e >> (SW_E_BITS - 1) else e


def to_signed(v, bits):
    """The low ``bits`` of ``v`` as a signed integer (two's complement wrap)."""
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


# ---- classes and function codes --------------------------------------------------------

class Op(IntEnum):
    """Instruction class, bits 3..0."""
    NOP = 0
    VOP = 1       # element pass: D[i] = sat(shift(f(A[i], B[i]))), reduce into an IR
    SVOP = 2      # scalar-unit pass over a vector of scalar words
    SOP = 3       # one scalar-unit / integer-register operation
    DOT = 4       # D[r] = sum_c Q[c] * ROW_r[c]  (int8 x int8)
    AXPY = 5      # D[c] = sum_r W[r] * ROW_r[c]  (18-bit x int8)
    MATVEC = 6    # the ternary engine: VMEM[D + r] = (W~ . ACT)[r]
    SAMPLE = 7    # top-k mask, draw, emit
    END = 8       # end of the step program
    ATTN = 9      # fused attention passes over the keys (added after the first commit)
    XFER = 10     # a transfer between the SDRAM and an on-chip space (issue 20)


class VFn(IntEnum):
    """VOP functions (bits 7..4): the value ``v`` of element ``i`` from ``x = A[i]``
    and ``y`` (B[i], or a broadcast register)."""
    PASS = 0      # v = x
    PASSR = 1     # v = max(x, 0)
    MUL = 2       # v = x * y, y an integer (low 18 bits, signed)
    MULS = 3      # v = x * y.m, and y.e is subtracted from the shift; y a scalar
    ADD = 4       # v = x + y
    SUB = 5       # v = x - y
    RSUB = 6      # v = y - x
    ROT = 7       # RoPE pair rotation (see docs/device-isa.md)
    EXP2 = 8      # v = exp2_neg(clamp(y - x, 0, 2**30))
    EXP2X = 9     # v = exp2_neg(clamp(x + y, 0, 2**30))
    SIGMUL = 10   # v = x18 * sigmoid_q15(y), x18 the low 18 bits of x, signed (SiLU GLU)


class Red(IntEnum):
    """VOP / SVOP reductions into ``IR[red_ir]`` over the written values ``out[i]``."""
    NONE = 0
    MAXABS = 1    # max |out|                      (0 for n == 0)
    NORM = 2      # bit_length(max |out|) - (rbits - 1)
    SUM = 3       # sum out
    SUMSQ = 4     # sum out**2
    MAX = 5       # max out                        (-2**47 for n == 0)
    ARGMAX = 6    # lowest i with out[i] == max    (0 for n == 0)
    MAXE = 7      # SVOP only: max of A[j].e       (E_MIN for n == 0)


class SVFn(IntEnum):
    """SVOP functions: a scalar-unit op per element ``j`` of a vector of scalar words."""
    SMUL = 0      # D[j] = scalar_mul(A[j], B)   (B an SR or a scalar-word element)
    MAXE = 1      # no write; only the reduction (use red = MAXE)
    SMUL2 = 2     # D[j] = scalar_mul(scalar_mul(A[j], B), SR[b2])  (two multiplies, one pass)


class SFn(IntEnum):
    """SOP functions. ``SR[x]`` are scalars ``(m, e)``; ``IR[x]`` 48-bit integers."""
    NOP = 0
    FROM_INT = 1  # SR[d] = scalar_from_int(IR[a] + imm, IR[b])
    MUL = 2       # SR[d] = scalar_mul(SR[a], SR[b])
    ADD = 3       # SR[d] = scalar_add(SR[a], SR[b])
    SHIFT = 4     # SR[d] = scalar_shift(SR[a], IR[b] + imm)
    RECIP = 5     # SR[d] = scalar_recip(SR[a])
    RSQRT = 6     # SR[d] = scalar_rsqrt(SR[a])
    LOAD = 7      # SR[d] = scalar word at space[addr (+dyn)]
    STORE = 8     # space[addr (+dyn)] = scalar word of SR[a]
    IADD = 9      # IR[d] = IR[a] + IR[b] + imm
    IMAXE = 10    # IR[d] = max(IR[c], SR[a].e) if SR[a].m != 0 and IR[b] != 0 else IR[c]


class SampleFn(IntEnum):
    TOPK = 0      # D[i] = 0 for i outside the top_k largest A[i] (ties: lowest index)
    DRAW = 1      # state = xorshift32(state); r = (state * IR[ir_a]) >> 32;
                  # IR[ir_d] = first i with cumsum(A)[i] > r
    EMIT = 2      # TOKENS[pos + 1] = IR[ir_a]; error BAD_TOKEN if >= n
    TCHECK = 3    # error BAD_TOKEN if the step's token >= n (first instruction of a step)


class AttnFn(IntEnum):
    """ATTN functions: one pass over the keys ``j < n`` of one query head each."""
    SCORES = 0    # D[j] = srs(dot(Q, Krow_j) * D[j].m, sh_imm - D[j].e, ATTN_SCORE_BITS); MAX
    PV = 1        # e_j = exp2(IR[ir_b] - A[j]); w_j = srs(e_j * vs_j.m, sh_imm + IR[sh_ir]
                  # - vs_j.e, 18); D[c] = sum_j w_j * Vrow_j[c]; IR[red_ir] = sum e_j


ATTN_SCORE_BITS = 24    # ATTN SCORES saturates its scores to this signed width


class XFn(IntEnum):
    """XFER functions. A transfer runs beside the instructions after it (one at a time:
    IN and OUT wait for the one before to finish first); see :func:`xfer_bytes`."""
    IN = 0        # SDRAM words [s_addr, +n) -> the on-chip space from c_addr
    OUT = 1       # the on-chip space from c_addr -> SDRAM words [s_addr, +n)
    WAIT = 2      # wait until no transfer runs (END waits too)


SDRAM_WORD_BYTES = 8    # an SDRAM word is 64 bits (the device's port word)
SDRAM_ADDR_BITS = 26    # XFER's SDRAM word address (512 MB; the ULX3S has 32 MB)


class Feature(IntFlag):
    """Instructions added after the first commit, which a VM may lack: its limits' (and
    INFO's) ``features`` bits say which it runs, and the host compiles with them exactly
    then (a device that reports no ``features`` field has none)."""
    SMUL2 = 1     # SVOP SMUL2
    ATTN = 2      # Op.ATTN (SCORES, PV)


FEATURES_ALL = Feature.SMUL2 | Feature.ATTN


def kv_scale_addr(limits, row_addr, stride, v):
    """The KVS address of the scale of the KVK (``v`` = 0) or KVV (``v`` = 1) row at
    ``row_addr`` (rows of ``2**stride`` elements): ``row_addr >> stride``, V scales from
    half the KVS depth on. ATTN PV reads the V scales at these addresses."""
    return (v * (limits.depth(Space.KVS) // 2)) + (row_addr >> stride)


class Cond(IntEnum):
    ALWAYS = 0
    GREEDY = 1    # only when the run is greedy (PARAM inv_t mantissa == 0)
    SAMPLED = 2   # only when the run samples (inv_t mantissa != 0)


class Dyn(IntEnum):
    """Which operand's address gets ``+ (pos or token) << dyn_k`` (``dyn_sel``)."""
    NONE = 0
    A = 1
    B = 2
    D = 3


class DynSrc(IntEnum):
    POS = 0
    TOKEN = 1


# ---- memory spaces ---------------------------------------------------------------------

class Space(IntEnum):
    """Memory spaces. Ids below 16 can be instruction operands (4-bit fields); all
    ids are valid in the VM's 5-bit ``load`` / ``peek`` space field."""
    NONE = 0
    VMEM = 1      # signed 40-bit working memory (also holds scalar words)
    ACT = 2       # the engine's int8 activation buffer (write only for the VM)
    TMEM = 3      # int16 tables: norm gains, RoPE cos/sin rows
    EMB = 4       # int8 embedding rows
    EMBS = 5      # embedding row scales (scalar words)
    HEAD = 6      # int8 lm_head rows (only when not tied)
    HEADS = 7     # lm_head row scales (scalar words)
    KVK = 8       # int8 K cache rows
    KVV = 9       # int8 V cache rows
    KVS = 10      # K and V per-position scales (scalar words)
    TOKENS = 11   # u16 token id per position
    SR = 12       # as an operand: the scalar register file (addr = index)
    IR = 13       # as an operand: the integer register file (addr = index)
    WGT = 14      # the engine's weight store (words of its tile layout); XFER only
    PROG = 16     # the program, 64-bit words (2 per instruction)
    SRINIT = 17   # initial SR values (scalar words), loaded into SR at the start of a run
    CYCLES = 18   # u32 cycles of the step at each position (written by the VM)
    PARAM = 19    # run parameters and result, 32-bit words (PARAM_WORDS)
    SDRAM = 20    # the board's SDRAM, 64-bit words (DeviceLimits.sdram_words; none: 0)


@dataclass(frozen=True)
class SpaceInfo:
    word_bits: int
    signed: bool
    writable_by_program: bool
    uploadable: bool

    @property
    def link_bytes(self):
        return -(-self.word_bits // 8)


SPACES = {
    Space.VMEM: SpaceInfo(VMEM_BITS, True, True, True),
    Space.ACT: SpaceInfo(8, True, True, False),
    Space.TMEM: SpaceInfo(16, True, False, True),
    Space.EMB: SpaceInfo(8, True, False, True),
    Space.EMBS: SpaceInfo(SW_BITS, False, False, True),
    Space.HEAD: SpaceInfo(8, True, False, True),
    Space.HEADS: SpaceInfo(SW_BITS, False, False, True),
    Space.KVK: SpaceInfo(8, True, True, True),
    Space.KVV: SpaceInfo(8, True, True, True),
    Space.KVS: SpaceInfo(SW_BITS, False, True, True),
    Space.TOKENS: SpaceInfo(TOKEN_BITS, False, True, True),
    Space.PROG: SpaceInfo(PROG_WORD_BITS, False, False, True),
    Space.SRINIT: SpaceInfo(SW_BITS, False, False, True),
    Space.CYCLES: SpaceInfo(32, False, False, False),
    Space.PARAM: SpaceInfo(32, False, False, True),
    Space.SDRAM: SpaceInfo(64, False, False, True),
}

SCALAR_SPACES = (Space.EMBS, Space.HEADS, Space.KVS)   # VMEM may also hold scalar words
ROW_SPACES = (Space.EMB, Space.HEAD, Space.KVK, Space.KVV)
# What XFER moves to and from the SDRAM, and the bytes one word takes there (the space's
# words, little-endian, packed; wider than 16 bits: one SDRAM word each, zero-extended).
# WGT's word is the engine's tile word: EngineConfig.word_bytes.
# TMEM: a model streamed from the SDRAM brings its tables in (RoPE rows, norm gains),
# four int16 words an SDRAM word. WGT only for IN.
# PROG (IN only): a program longer than the device's PROG streams from the SDRAM in
# segments (offload/overlay.py), a 64-bit PROG word an SDRAM word.
XFER_SPACES = {Space.VMEM: 8, Space.TMEM: 2, Space.EMB: 1, Space.EMBS: 8, Space.HEAD: 1,
               Space.HEADS: 8, Space.KVK: 1, Space.KVV: 1, Space.KVS: 8, Space.WGT: None,
               Space.PROG: 8}
# XFER's c_space field is 4 bits: it names PROG (id 16) by this code
XFER_PROG = 15


def xfer_space(code):
    """The on-chip space an XFER's ``c_space`` field names (:data:`XFER_PROG`: PROG), or
    the code itself if it names none."""
    if code == XFER_PROG:
        return Space.PROG
    return Space(code) if code in Space._value2member_map_ else code


def xfer_bytes(space, wgt_word_bytes):
    """Bytes a word of ``space`` takes in the SDRAM (TernaryError if XFER cannot reach
    it). A transfer of ``n`` SDRAM words moves ``n * 8 / xfer_bytes`` words of the
    on-chip space; its first word must start an SDRAM word (``c_addr * xfer_bytes`` a
    multiple of 8) and it must move whole words."""
    s = xfer_space(space)
    if s not in XFER_SPACES:
        raise TernaryError(f"XFER cannot reach space {space}")
    return wgt_word_bytes if s == Space.WGT else XFER_SPACES[s]

# ---- registers -------------------------------------------------------------------------

IR_COUNT = 16           # IR[0] reads as 0 and ignores writes
SR_COUNT = 256          # SR[0] is PARAM inv_t (set by the run); SR[1..] from SRINIT
SR_INV_T = 0
IR_ZERO = 0

# ---- instruction layouts ---------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    lsb: int
    width: int
    signed: bool = False

    @property
    def msb(self):
        return self.lsb + self.width - 1


HEADER = {"op": Field(0, 4), "fn": Field(4, 4), "cond": Field(125, 2), "gen_only": Field(127, 1)}
# shared by the vector classes (VOP, SVOP, DOT, AXPY, SAMPLE)
VECTOR = {
    "npos": Field(8, 1),          # n += pos + 1
    "n": Field(9, 14),
    "a_space": Field(23, 4), "a_addr": Field(27, ADDR_BITS),
    "b_space": Field(45, 4), "b_addr": Field(49, ADDR_BITS),
    "d_space": Field(67, 4), "d_addr": Field(71, ADDR_BITS),
    "dyn_sel": Field(89, 2),      # Dyn
    "dyn_src": Field(91, 1),      # DynSrc
    "dyn_k": Field(92, 4),        # address += (pos or token) << dyn_k
}
LAYOUTS = {
    Op.NOP: {},
    Op.END: {},
    Op.VOP: {**VECTOR,
             "sh_imm": Field(96, 6, True),   # shift = sh_imm + IR[sh_ir] - y.e (MULS)
             "sh_ir": Field(102, 4),
             "bits": Field(106, 6),          # saturate to signed `bits` (2..48)
             "red": Field(112, 3),           # Red
             "red_ir": Field(115, 4),
             "rbits": Field(119, 5),         # Red.NORM target width
             "sym": Field(124, 1)},          # clip to +-(2**(bits-1) - 1)
    Op.SVOP: {**VECTOR, "b2": Field(96, 8), "red": Field(112, 3), "red_ir": Field(115, 4)},
    Op.DOT: {**VECTOR,
             "len": Field(96, 14),           # elements per row (Q length)
             "stride": Field(110, 4)},       # row r at b_addr + (r << stride)
    Op.AXPY: {**VECTOR, "len": Field(96, 14), "stride": Field(110, 4)},
    Op.SAMPLE: {**VECTOR, "ir_a": Field(102, 4), "ir_d": Field(115, 4)},
    Op.SOP: {"s_space": Field(23, 4), "s_addr": Field(27, ADDR_BITS),
             "imm": Field(45, 32, True),
             "c": Field(77, 4),              # IR index (IMAXE)
             "dyn_sel": Field(89, 2), "dyn_src": Field(91, 1), "dyn_k": Field(92, 4),
             "d": Field(96, 8), "a": Field(104, 8), "b": Field(112, 8)},
    Op.MATVEC: {"base": Field(8, 24), "m": Field(32, 16), "k": Field(48, 16),
                "d_space": Field(67, 4), "d_addr": Field(71, ADDR_BITS)},
}
LAYOUTS[Op.ATTN] = {
    **{k: v for k, v in VECTOR.items() if not k.startswith("dyn")},
    "sh_imm": Field(89, 6, True),
    "len": Field(96, 10),           # head_dim (elements per row)
    "stride": Field(106, 4),        # row j at b_addr + (j << stride)
    "sh_ir": Field(110, 4),         # PV: IR of the largest value-scale exponent
    "red_ir": Field(115, 4),        # SCORES: max score; PV: sum of the exp2 weights
    "ir_b": Field(119, 4),          # PV: IR of the max score
}
LAYOUTS[Op.XFER] = {
    "npos": Field(8, 1),            # n += pos << npos_k
    "npos_k": Field(9, 4),
    "n": Field(13, 16),             # SDRAM words
    "c_space": Field(29, 4), "c_addr": Field(33, ADDR_BITS),      # the on-chip side
    "s_addr": Field(51, SDRAM_ADDR_BITS),                         # the SDRAM side
    "dyn_src": Field(77, 1),        # DynSrc of both dynamic offsets
    "c_dyn": Field(78, 1), "c_dyn_k": Field(79, 5),   # c_addr += (pos or token) << c_dyn_k
    "s_dyn": Field(84, 1), "s_dyn_k": Field(85, 5),   # s_addr += (pos or token) << s_dyn_k
}
FN_ENUMS = {Op.VOP: VFn, Op.SVOP: SVFn, Op.SOP: SFn, Op.SAMPLE: SampleFn, Op.ATTN: AttnFn,
            Op.XFER: XFn}


def _check_layouts():
    for op, lay in LAYOUTS.items():
        used = 0
        for name, f in {**HEADER, **lay}.items():
            mask = ((1 << f.width) - 1) << f.lsb
            if used & mask or f.msb >= INSTR_BITS:
                raise AssertionError(f"layout of {op.name}: field {name} overlaps")
            used |= mask


_check_layouts()


def struct_fields(op):
    """``[(name, width, signed)]`` of class ``op`` from bit 0 to bit 127, free bits as
    ``_pad<lsb>`` entries: build an Amaranth ``data.StructLayout`` of the whole 128-bit
    instruction from it (fields in this order)."""
    fields = sorted({**HEADER, **LAYOUTS[Op(op)]}.items(), key=lambda kv: kv[1].lsb)
    out, at = [], 0
    for name, f in fields:
        if f.lsb > at:
            out.append((f"_pad{at}", f.lsb - at, False))
        out.append((name, f.width, f.signed))
        at = f.lsb + f.width
    if at < INSTR_BITS:
        out.append((f"_pad{at}", INSTR_BITS - at, False))
    return out


class Instr:
    """One instruction: its class, its fields (missing ones are 0) and a human name
    (``"layer 2 attn head 1: scores"``) that ``--check`` reports."""

    def __init__(self, op, name="", **f):
        self.op = Op(op)
        lay = {**HEADER, **LAYOUTS[self.op]}
        for k in f:
            if k not in lay or k == "op":
                raise TernaryError(f"instruction {Op(op).name} has no field {k!r}")
        self.f = {k: int(f.get(k, 0)) for k in lay if k != "op"}
        self.__dict__.update(self.f)      # fields as attributes (ins.n, ins.a_addr, ...)
        self.name = name

    def __repr__(self):
        fs = ", ".join(f"{k}={v}" for k, v in self.f.items() if v)
        return f"Instr({self.op.name}, {fs}{', ' if fs else ''}name={self.name!r})"

    def __eq__(self, other):
        return isinstance(other, Instr) and self.op == other.op and self.f == other.f


def encode(ins):
    """The 128-bit integer of an :class:`Instr`; a field that does not fit raises a
    TernaryError naming it."""
    word = int(ins.op)
    for name, f in {**HEADER, **LAYOUTS[ins.op]}.items():
        if name == "op":
            continue
        v = ins.f[name]
        lo, hi = (-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed else \
            (0, (1 << f.width) - 1)
        if not lo <= v <= hi:
            raise TernaryError(f"{ins.op.name} field {name} = {v} does not fit "
                               f"{f.width} bits ({lo}..{hi}) in {ins.name or 'an instruction'}")
        word |= (v & ((1 << f.width) - 1)) << f.lsb
    return word


def decode(word, name=""):
    """The :class:`Instr` of a 128-bit integer; an unknown class raises TernaryError
    (the device's BAD_OPCODE)."""
    word = int(word)
    code = word & 0xF
    if code not in Op._value2member_map_:
        raise TernaryError(f"bad opcode {code}")
    op = Op(code)
    vals = {}
    for key, f in {**HEADER, **LAYOUTS[op]}.items():
        if key == "op":
            continue
        v = (word >> f.lsb) & ((1 << f.width) - 1)
        vals[key] = to_signed(v, f.width) if f.signed else v
    return Instr(op, name, **vals)


def prog_words(instrs):
    """PROG space image: two 64-bit words per instruction, low half first."""
    out = []
    for ins in instrs:
        w = encode(ins)
        out += [w & ((1 << 64) - 1), w >> 64]
    return out


def prog_unwords(words):
    return [decode(words[i] | (words[i + 1] << 64)) for i in range(0, len(words) - 1, 2)]


# ---- run parameters and result ---------------------------------------------------------

class MachineStatus(IntEnum):
    """RunResult status (error codes). Any error stops the run; the ids produced before
    the failing step are valid, nothing after it is."""
    OK = 0
    BAD_OPCODE = 1
    SCALAR_OVF = 2     # a scalar result's exponent left s12
    BAD_TOKEN = 3      # a sampled or fed id >= vocab
    BAD_PARAMS = 4     # run parameters outside the limits (pos0+n_feed+n_new-1 > context, ...)
    PROG_END = 5       # the program ran past its last word without END


class RunField(NamedTuple):
    name: str
    bits: int
    signed: bool


# The `run` stream payload and the PARAM words, in this order (the RTL port layouts are
# built from these tables; ternary_core.protocol places the same fields on the link by name)
RUN_PARAMS = (RunField("pos0", 16, False), RunField("n_feed", 16, False), RunField("n_new", 16, False),
              RunField("state", 32, False), RunField("inv_t_m", 16, False), RunField("inv_t_e", 16, True),
              RunField("top_k", 16, False))
RUN_RESULT = (RunField("status", 8, False), RunField("cycles", 32, False), RunField("state", 32, False),
              RunField("err_pc", 16, False), RunField("err_pos", 16, False), RunField("n_done", 16, False))
# PARAM space: one 32-bit word per field; results from word 8 on
PARAM_WORDS = {f.name: i for i, f in enumerate(RUN_PARAMS)}
RESULT_WORDS = {f.name: 8 + i for i, f in enumerate(RUN_RESULT)}
PARAM_DEPTH = 16


@dataclass(frozen=True, kw_only=True)
class RunParams:
    """One run's parameters (the fields of :data:`RUN_PARAMS`), by keyword only: the
    link, the PARAM words and the port order them differently."""
    pos0: int
    n_feed: int
    n_new: int
    state: int
    inv_t_m: int = 0       # 0: greedy
    inv_t_e: int = 0
    top_k: int = 0

    def words(self):
        return [getattr(self, f.name) & 0xFFFFFFFF for f in RUN_PARAMS]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    status: int
    cycles: int
    state: int
    err_pc: int = 0
    err_pos: int = 0
    n_done: int = 0        # generated ids written (TOKENS[pos0+n_feed .. +n_done-1])


for _cls, _table in ((RunParams, RUN_PARAMS), (RunResult, RUN_RESULT)):
    if tuple(f.name for f in dc_fields(_cls)) != tuple(f.name for f in _table):
        raise AssertionError(f"{_cls.__name__}'s fields are not those of its table")
