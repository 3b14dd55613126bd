"""The VOP element datapath of the VM (docs/device-isa.md, "VOP"): the value ``v`` of one
element from its operands, the final rounding shift and saturation, and the reductions.
Pure logic builders, called by :class:`~.machine.VectorMachine` for its pipeline stages."""

from amaranth import Const, Mux, Signal, signed

from ternary_core.offload.isa import IR_BITS, VFn

from ..arith.pipeline import shift_round_any

V_BITS = 64          # the element value before its shift: 40 x 18-bit products and sums
SH_BITS = 9          # the shift, clamped to -128..127 (beyond, results are already 0 or saturated)
OUT_BITS = IR_BITS   # `bits` is at most 48


def clamp_signed(m, v, bits, name):
    """``v`` clamped to the signed ``bits``-bit range, as a Signal."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = Signal(signed(bits), name=name)
    m.d.comb += out.eq(Mux(v > hi, hi, Mux(v < lo, lo, v)))
    return out


def element_value(m, fn, x, y, p, c, s, first_half):
    """Stage 1 of a VOP element: ``(v, exp2_d)`` for function ``fn``.

    ``x`` = A[i], ``y`` = the B value (memory element, IR or SR word), ``p``/``c``/``s``
    the ROT partner and cos/sin (18-bit signed), ``first_half`` = ``i < n/2`` for ROT.
    ``exp2_d`` is EXP2/EXP2X's clamped difference for the Exp2Unit. EXP2, EXP2X and
    SIGMUL take their ``v`` from their units (the datapath's Exp2Unit and SigmoidUnit,
    two cycles later); ``v`` is 0 here for them."""
    v = Signal(signed(V_BITS), name="vop_v")
    y18 = y[:18].as_signed()
    ym = y[:16]
    with m.Switch(fn):
        with m.Case(VFn.PASS):
            m.d.comb += v.eq(x)
        with m.Case(VFn.PASSR):
            m.d.comb += v.eq(Mux(x < 0, 0, x))
        with m.Case(VFn.MUL):
            m.d.comb += v.eq(x * y18)
        with m.Case(VFn.MULS):
            m.d.comb += v.eq(x * ym)
        with m.Case(VFn.ADD):
            m.d.comb += v.eq(x + y)
        with m.Case(VFn.SUB):
            m.d.comb += v.eq(x - y)
        with m.Case(VFn.RSUB):
            m.d.comb += v.eq(y - x)
        with m.Case(VFn.ROT):
            xc, ps = x * c, p * s
            m.d.comb += v.eq(Mux(first_half, xc - ps, xc + ps))
    diff = Signal(signed(V_BITS), name="exp2_diff")
    m.d.comb += diff.eq(Mux(fn == VFn.EXP2X, x + y, y - x))
    d = Signal(31, name="exp2_d")
    m.d.comb += d.eq(Mux(diff < 0, 0, Mux(diff > (1 << 30), 1 << 30, diff)))
    return v, d


def shift_value(v, sh):
    """``shift_round(v, sh)`` (right: rounded; left: exact, clamped at the width that
    already saturates every ``bits``): the stage before the saturation."""
    return shift_round_any(v, sh, V_BITS, OUT_BITS)


def saturate_dynamic(m, v, bits, sym):
    """``saturate(v, bits)`` for a run-time ``bits`` (2..48); ``sym`` clips the low end
    to ``-(2**(bits-1) - 1)``."""
    hi = Signal(signed(OUT_BITS + 1), name="sat_hi")
    m.d.comb += hi.eq((Const(1, OUT_BITS + 1) << (bits - 1).as_unsigned()[:6]) - 1)
    lo = Mux(sym, -hi, -hi - 1)
    out = Signal(signed(OUT_BITS), name="vop_out")
    m.d.comb += out.eq(Mux(v > hi, hi, Mux(v < lo, lo, v)))
    return out
