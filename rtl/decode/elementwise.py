"""Per-element vector ops of the integer decode, each bit-exact to its golden function in
:mod:`ternary_core.integer` and each a stall-together pipeline taking one element per
cycle. A ``last`` bit rides along with every element to mark a vector's end."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.integer.fixed import MANT_BITS
from ternary_core.integer.ops import RES_BITS, ROPE_FRAC_BITS

from .pipeline import StallPipeline, saturate, shift_round_right
from .scalar_unit import scalar_layout


def _check_bits(name, value, lo, hi):
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


class ScaleUnit(wiring.Component):
    """``x * scale`` into a fixed-point format: ``apply_scalar(x, scale, frac_bits,
    out_bits)`` (``shift_round_saturate(x * m, -(e + frac_bits), out_bits)``) — the
    BitLinear rescale, the embedding's row scale and the lm_head's logit scale.

    Stage 1 multiplies ``x`` by the mantissa (one DSP for ``x_bits <= 18``), stage 2
    shifts (rounding right, or left), stage 3 saturates. A left shift is done exactly
    in ``x_bits + 17 + out_bits`` bits and then saturated, which equals the golden
    model's overflow test.

    Parameters
    ----------
    frac_bits, out_bits : int
        The result's fraction bits and signed width (e.g. 16 and 32: Q15.16).
    x_bits : int
        Signed width of ``x`` (default 24: BitLinear and lm_head accumulators).
    exp_bits : int
        Exponent width of the scale (as :class:`~.scalar_unit.ScalarUnit`).

    Ports
    -----
    i : In(stream of {x: signed(x_bits), scale: scalar_layout(exp_bits), last: 1})
    o : Out(stream of {value: signed(out_bits), last: 1})

    Latency ``latency`` (3) cycles, throughput one element per cycle.
    """

    def __init__(self, *, frac_bits, out_bits, x_bits=24, exp_bits=12):
        _check_bits("frac_bits", frac_bits, 0, 32)
        _check_bits("out_bits", out_bits, 2, 48)
        _check_bits("x_bits", x_bits, 2, 40)
        _check_bits("exp_bits", exp_bits, 11, 24)
        self._frac_bits, self._out_bits, self._x_bits, self._exp_bits = frac_bits, out_bits, x_bits, exp_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"x": signed(x_bits), "scale": scalar_layout(exp_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": signed(out_bits), "last": 1}))),
        })

    @property
    def latency(self):
        return 3

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        PW = self._x_bits + MANT_BITS + 1           # signed product
        OB = self._out_bits
        q = self.i.payload
        # stage 1: product, shift direction and amount (right shifts past PW give 0 or -1)
        p = Signal(signed(PW))
        right = Signal()
        amount = Signal(range(max(PW, OB) + 1))
        last1, last2 = Signal(), Signal()
        s = -(q.scale.e.as_signed() + self._frac_bits)
        with m.If(pipe.en):
            m.d.sync += [p.eq(q.x * q.scale.m), right.eq(s > 0), last1.eq(q.last),
                         amount.eq(Mux(s > 0, Mux(s > PW, PW, s), Mux(-s > OB, OB, -s)))]
        # stage 2: shift
        v = Signal(signed(PW + OB + 1))
        with m.If(pipe.en):
            m.d.sync += [v.eq(Mux(right, shift_round_right(p, amount, PW), p << amount)),
                         last2.eq(last1)]
        # stage 3: saturate
        with m.If(pipe.en):
            m.d.sync += [self.o.payload.value.eq(saturate(v, OB)), self.o.payload.last.eq(last2)]
        return m


class SaturatingAdd(wiring.Component):
    """``saturate(a + b, bits)``: the residual add (``residual_add``, int32).

    Ports
    -----
    i : In(stream of {a: signed(bits), b: signed(bits), last: 1})
    o : Out(stream of {value: signed(bits), last: 1})

    Latency ``latency`` (1) cycle, throughput one per cycle.
    """

    def __init__(self, *, bits=RES_BITS):
        _check_bits("bits", bits, 2, 64)
        self._bits = bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": signed(bits), "b": signed(bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": signed(bits), "last": 1}))),
        })

    @property
    def latency(self):
        return 1

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        with m.If(pipe.en):
            m.d.sync += [self.o.payload.value.eq(saturate(q.a + q.b, self._bits)),
                         self.o.payload.last.eq(q.last)]
        return m


class RopeRotator(wiring.Component):
    """Rotates one pair ``(a, b) = (x[i], x[i + hd/2])`` by the table angle (``rope``):
    ``lo = round((a*cos - b*sin) / 2**14)``, ``hi = round((b*cos + a*sin) / 2**14)``.

    Four multiplies (``x_bits`` x 16, one DSP each for ``x_bits <= 18``) in stage 1, the
    sums and rounding shifts in stage 2. ``cos``/``sin`` are the golden model's int16
    Q1.14 table entries; the results need ``x_bits + 1`` bits (``|cos|, |sin| <= 1``).

    Ports
    -----
    i : In(stream of {a, b: signed(x_bits), cos, sin: signed(16), last: 1})
    o : Out(stream of {lo, hi: signed(x_bits + 1), last: 1})

    Latency ``latency`` (2) cycles, throughput one pair per cycle.
    """

    def __init__(self, *, x_bits=24):
        _check_bits("x_bits", x_bits, 2, 40)
        self._x_bits = x_bits
        xs, ys = signed(x_bits), signed(x_bits + 1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"a": xs, "b": xs, "cos": signed(16), "sin": signed(16), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"lo": ys, "hi": ys, "last": 1}))),
        })

    @property
    def latency(self):
        return 2

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        PW = self._x_bits + 16
        ac, bs, bc, as_ = (Signal(signed(PW), name=n) for n in ("ac", "bs", "bc", "as_"))
        last = Signal()
        with m.If(pipe.en):
            m.d.sync += [ac.eq(q.a * q.cos), bs.eq(q.b * q.sin), bc.eq(q.b * q.cos),
                         as_.eq(q.a * q.sin), last.eq(q.last)]
            ob = self._x_bits + 1
            m.d.sync += [self.o.payload.lo.eq(shift_round_right(ac - bs, ROPE_FRAC_BITS, PW + 1)[:ob]),
                         self.o.payload.hi.eq(shift_round_right(bc + as_, ROPE_FRAC_BITS, PW + 1)[:ob]),
                         self.o.payload.last.eq(last)]
        return m
