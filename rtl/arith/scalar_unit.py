"""The scalar unit: the per-vector scale factors of the integer decode (block floating
point), bit-exact to the ``Scalar`` functions of :mod:`ternary_core.integer.fixed`.

A scalar is ``m * 2**e`` with an unsigned 16-bit mantissa ``m`` in ``[2**15, 2**16)`` and
a signed exponent; zero is ``m == 0`` (the unit writes ``E_ZERO`` as its exponent, like the
golden model). Inputs must be canonical (what the unit and the golden model produce).
"""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.integer.fixed import (E_ZERO, MANT_BITS, RECIP_INDEX_BITS, RECIP_TABLE,
                                        RSQRT_INDEX_BITS, RSQRT_TABLE)

from .pipeline import StallPipeline, normalize_left, shift_round_right


class ScalarOp(enum.Enum, shape=3):
    """What a scalar-unit request computes (golden function in brackets)."""
    MUL = 0       # a * b                 (scalar_mul)
    SHIFT = 1     # a * 2**k              (scalar_shift)
    FROM_INT = 2  # x * 2**k, x >= 0      (scalar_from_int)
    ADD = 3       # a + b                 (scalar_add)
    RECIP = 4     # 1 / a                 (scalar_recip)
    RSQRT = 5     # 1 / sqrt(a)           (scalar_rsqrt)


def scalar_layout(exp_bits):
    """A scalar as hardware carries it: 16-bit mantissa, signed ``exp_bits`` exponent."""
    return data.StructLayout({"m": unsigned(MANT_BITS), "e": signed(exp_bits)})


def request_layout(exp_bits, int_bits):
    return data.StructLayout({"op": ScalarOp, "a": scalar_layout(exp_bits),
                              "b": scalar_layout(exp_bits), "x": unsigned(int_bits),
                              "k": signed(exp_bits)})


def response_layout(exp_bits):
    """``ovf`` is set when the exact result's exponent does not fit ``exp_bits`` (the
    value is then wrong; the golden model's exponents are unbounded)."""
    return data.StructLayout({"value": scalar_layout(exp_bits), "ovf": unsigned(1)})


RSQRT_BASE = len(RECIP_TABLE)   # the rsqrt table follows the recip table in one ROM


def scalar_rom_init():
    """The unit's one ROM: the reciprocal table, then the reciprocal-square-root table
    (the golden model's own arrays, so there is one definition of each)."""
    return [int(v) for v in RECIP_TABLE] + [int(v) for v in RSQRT_TABLE]


class ScalarUnit(wiring.Component):
    """One scalar operation per cycle, in order, with a fixed latency.

    Every request runs through the same seven stages, so results leave in request
    order and the unit needs no reorder logic::

        1 decode, ROM address   2 multiply 1   3 multiply 2   4 multiply 3
        5 finish (rounding)     6 leading-one normalize       7 round, exponent, zero

    Multiplies (16 to 17 bits unsigned, one ECP5 MULT18X18D each): product ``a.m*b.m``
    or ``m*y0`` (recip) or ``y0*y0`` (rsqrt) in stage 2; the Newton steps' second and
    third products in stages 3 and 4. ``ADD`` aligns both mantissas (16 guard bits) with
    rounding right shifts in stage 2. Every op ends in the same normalizer
    (``scalar_from_int``): leading-one detector, shift, round half up, carry fix-up.

    Parameters
    ----------
    exp_bits : int
        Width of the signed exponent (default 12, so the golden model's
        ``E_ZERO = -1024`` fits; results outside the range raise ``ovf``).
    int_bits : int
        Width of ``FROM_INT``'s unsigned ``x`` (default 48: a sum of squares of 4096
        16-bit values).

    Ports
    -----
    i : In(stream of request_layout)
        ``op``; operands ``a``, ``b`` (scalars), ``x`` (unsigned int), ``k`` (exponent).
    o : Out(stream of response_layout)

    Latency ``latency`` (7) cycles from the input handshake to ``o.valid``; throughput
    one request per cycle; back-pressure on ``o`` stalls the whole pipeline.
    """

    def __init__(self, *, exp_bits=12, int_bits=48):
        if not isinstance(exp_bits, int) or not 11 <= exp_bits <= 24:
            raise ValueError(f"exp_bits must be an integer in 11..24 (E_ZERO = {E_ZERO} "
                             f"must fit), not {exp_bits!r}")
        if not isinstance(int_bits, int) or not 34 <= int_bits <= 64:
            raise ValueError(f"int_bits must be an integer in 34..64 (ADD's aligned sum has "
                             f"34 bits), not {int_bits!r}")
        self._exp_bits, self._int_bits = exp_bits, int_bits
        super().__init__({
            "i": In(stream.Signature(request_layout(exp_bits, int_bits))),
            "o": Out(stream.Signature(response_layout(exp_bits))),
        })

    @property
    def exp_bits(self):
        return self._exp_bits

    @property
    def int_bits(self):
        return self._int_bits

    @property
    def latency(self):
        """Cycles from the input handshake to the result's ``o.valid``."""
        return 7

    @property
    def throughput(self):
        """Requests per cycle without back-pressure."""
        return 1

    def elaborate(self, platform):
        m = Module()
        EB, IW = self._exp_bits, self._int_bits
        EW = EB + 8          # internal exponents: sums, offsets and the overflow test
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        en = pipe.en

        # in LUTs, not a block RAM (the scarce resource of the whole-model ULX3S build)
        m.submodules.rom = rom = memory.Memory(shape=unsigned(16), depth=len(scalar_rom_init()),
                                               init=scalar_rom_init(), attrs={"rom_style": "logic"})
        rd = rom.read_port(domain="sync")
        m.d.comb += rd.en.eq(en)

        # The lane: what travels down the pipeline. Ops use the fields they need.
        lane = data.StructLayout({
            "op": ScalarOp, "m": unsigned(17), "bm": unsigned(16), "e": signed(EW),
            "p": unsigned(34), "y0": unsigned(16), "da": unsigned(6), "db": unsigned(6),
            "nx": unsigned(IW), "ne": signed(EW), "zero": 1})
        r = [Signal(lane, name=f"s{k + 1}") for k in range(5)]

        def stage(k, nxt):
            with m.If(en):
                m.d.sync += r[k].eq(nxt)

        # --- 1: decode, ROM address, ADD alignment amounts --------------------------
        q = self.i.payload
        n1 = Signal(lane)
        a_e, b_e, k_e = q.a.e.as_signed(), q.b.e.as_signed(), q.k.as_signed()
        even = ~q.a.e[0]
        m2 = Mux((q.op == ScalarOp.RSQRT) & even, q.a.m << 1, q.a.m)
        idx_recip = q.a.m[MANT_BITS - 1 - RECIP_INDEX_BITS:MANT_BITS - 1]
        idx_rsqrt = (m2 >> (MANT_BITS - 1 - RSQRT_INDEX_BITS))[:8] - (1 << RSQRT_INDEX_BITS)
        m.d.comb += rd.addr.eq(Mux(q.op == ScalarOp.RSQRT, RSQRT_BASE + idx_rsqrt, idx_recip))
        za, zb = q.a.m == 0, q.b.m == 0
        top = Mux(zb, a_e, Mux(za, b_e, Mux(a_e > b_e, a_e, b_e)))
        # a right shift of a 32-bit value by 33 or more rounds to 0, as any larger one
        da, db = (top - a_e), (top - b_e)
        m.d.comb += [
            n1.op.eq(q.op), n1.m.eq(m2), n1.bm.eq(q.b.m),
            n1.e.eq(Mux((q.op == ScalarOp.RSQRT) & even, a_e - 1, a_e)),
            n1.da.eq(Mux(za, 33, Mux(da > 33, 33, da))),
            n1.db.eq(Mux(zb, 33, Mux(db > 33, 33, db))),
            n1.zero.eq(((q.op == ScalarOp.RECIP) | (q.op == ScalarOp.RSQRT)) & za),
        ]
        with m.Switch(q.op):
            with m.Case(ScalarOp.MUL):
                m.d.comb += n1.ne.eq(a_e + b_e)
            with m.Case(ScalarOp.SHIFT):
                m.d.comb += [n1.nx.eq(q.a.m), n1.ne.eq(a_e + k_e)]
            with m.Case(ScalarOp.FROM_INT):
                m.d.comb += [n1.nx.eq(q.x), n1.ne.eq(k_e)]
            with m.Case(ScalarOp.ADD):
                m.d.comb += n1.ne.eq(top - MANT_BITS)
        stage(0, n1)

        # --- 2: first multiply; ADD's aligned sum -----------------------------------
        s = r[0]
        n2 = Signal(lane)
        y0 = rd.data
        m.d.comb += [n2.eq(s), n2.y0.eq(y0)]
        mul1_b = Mux(s.op == ScalarOp.MUL, s.bm, y0)
        mul1_a = Mux(s.op == ScalarOp.RSQRT, y0, s.m[:16])
        m.d.comb += n2.p.eq(mul1_a * mul1_b)
        with m.If(s.op == ScalarOp.ADD):
            sa = shift_round_right((s.m[:16] << MANT_BITS)[:32], s.da, 33)
            sb = shift_round_right((s.bm << MANT_BITS)[:32], s.db, 33)
            m.d.comb += n2.nx.eq(sa + sb)
        stage(1, n2)

        # --- 3: second multiply (Newton step) ---------------------------------------
        s = r[1]
        n3 = Signal(lane)
        m.d.comb += n3.eq(s)
        d_recip = ((Const(1 << 32, 34) - s.p + (1 << 15)) >> 16)[:17]    # ~2**15 (2 - f*y0)
        sq = ((s.p + (1 << 15)) >> 16)[:17]                              # Q0.16 of y0**2
        with m.Switch(s.op):
            with m.Case(ScalarOp.MUL):
                m.d.comb += n3.nx.eq(s.p)
            with m.Case(ScalarOp.RECIP):
                m.d.comb += n3.p.eq(s.y0 * d_recip)
            with m.Case(ScalarOp.RSQRT):
                m.d.comb += n3.p.eq(s.m * sq)
        stage(2, n3)

        # --- 4: third multiply (rsqrt's Newton step); recip's result --------------------
        s = r[2]
        n4 = Signal(lane)
        m.d.comb += n4.eq(s)
        d_rsqrt = ((Const(3 << 31, 34) - s.p + (1 << 15)) >> 16)[:17]
        with m.Switch(s.op):
            with m.Case(ScalarOp.RECIP):
                m.d.comb += [n4.nx.eq((s.p + (1 << 14)) >> 15), n4.ne.eq(-31 - s.e)]
            with m.Case(ScalarOp.RSQRT):
                m.d.comb += n4.p.eq(s.y0 * d_rsqrt)
        stage(3, n4)

        # --- 5: rsqrt's result (exponent halves exactly: 15 + e2 is even) ------------
        s = r[3]
        n5 = Signal(lane)
        m.d.comb += n5.eq(s)
        with m.If(s.op == ScalarOp.RSQRT):
            m.d.comb += [n5.nx.eq((s.p + (1 << 15)) >> 16),
                         n5.ne.eq(-16 - ((s.e + 15) >> 1))]
        stage(4, n5)

        # --- 6: leading-one normalize ----------------------------------------------
        s = r[4]
        shifted, lz = normalize_left(m, s.nx, IW)
        norm = Signal(data.StructLayout({"v": unsigned(IW), "e": signed(EW), "zero": 1}))
        with m.If(en):
            # e + bit_length - 16, before the rounding carry
            m.d.sync += [norm.v.eq(shifted), norm.e.eq(s.ne + (IW - MANT_BITS) - lz),
                         norm.zero.eq(s.zero | (s.nx == 0))]

        # --- 7: round half up, carry fix-up, zero, exponent range ---------------------
        top16 = norm.v[IW - MANT_BITS:]
        mr = top16 + norm.v[IW - MANT_BITS - 1]          # 17 bits
        over = mr[MANT_BITS]
        e_out = norm.e + over
        lo, hi = -(1 << (EB - 1)), (1 << (EB - 1)) - 1
        with m.If(en):
            m.d.sync += [
                self.o.payload.value.m.eq(Mux(norm.zero, 0, Mux(over, 1 << (MANT_BITS - 1), mr[:MANT_BITS]))),
                self.o.payload.value.e.eq(Mux(norm.zero, E_ZERO, e_out)),
                self.o.payload.ovf.eq(~norm.zero & ((e_out < lo) | (e_out > hi))),
            ]
        return m
