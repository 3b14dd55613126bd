"""Row-wise ops of the integer decode that need the whole row first: the range pass of
``normalize_rows`` and the int8 absmax quantizer (``quant_int8``), bit-exact to
:mod:`ternary_core.integer.ops`.

``quant_int8`` in hardware is two passes over the row and four scalar-unit ops between::

    pass 1  RowRange(bits=17):      shift s, amax = max|normalize(y)|      (streaming)
    scalar  a = FROM_INT(amax); k = MUL(RECIP(a), FROM_INT(127))
            scale = SHIFT(MUL(a, INV_127), s)                               (ScalarUnit)
    pass 2  Int8Quantizer:          x_q = clip(round(normalize(y) * k), +-127)

The same ``RowRange`` gives ``normalize_rows`` for any width (16 in the norms and head
merge, 17 in the GLU).
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import StallPipeline, normalize_left, saturate, shift_round_right
from .scalar_unit import scalar_layout

SHIFT_SHAPE = signed(8)     # a row's normalizing shift: -(bits-1) .. in_bits - bits + 2


def shift_round_any(v, s, width, max_left):
    """``shift_round(v, s)`` for signed ``s`` (rounding right for ``s > 0``, exact left
    otherwise), with right shifts clamped to ``width`` (they give 0 or -1 from there on,
    as the golden model's) and left shifts to ``max_left`` (callers saturate)."""
    right = s > 0
    r = Mux(s > width, width, s)
    left = Mux(-s > max_left, max_left, -s)
    return Mux(right, shift_round_right(v, r[:len(r)].as_unsigned(), width),
               v << left[:max(1, max_left.bit_length())].as_unsigned())


def _check(name, value, lo, hi):
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


class RowRange(wiring.Component):
    """Pass 1 of ``normalize_rows(y, bits)``: streams a row, then gives the shift ``s``
    with ``y ~ normalize(y) * 2**s`` and ``amax = max |normalize(y)|`` where
    ``normalize(y) = saturate(shift_round(y, s), bits)``.

    It keeps the row's maximum and minimum: ``max|y|`` sets ``s`` (leading-one detector),
    and because ``normalize`` is monotonic, ``amax`` comes from the two extremes alone,
    so the row is read once.

    Parameters
    ----------
    in_bits : int
        Signed width of the row's values (default 32).
    bits : int
        The normalized signed width (16 or 17 in the golden model).

    Ports
    -----
    i : In(stream of {value: signed(in_bits), last: 1})
    o : Out(stream of {shift: signed(8), amax: unsigned(bits)})

    Throughput one element per cycle; the result is valid ``latency`` (5) cycles after
    the ``last`` handshake (counted as the pipelines count: a one-stage unit has 1), and
    ``i`` waits until it is read.
    """

    def __init__(self, *, in_bits=32, bits=17):
        _check("in_bits", in_bits, 2, 64)
        _check("bits", bits, 2, in_bits)
        self._in_bits, self._bits = in_bits, bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"value": signed(in_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"shift": SHIFT_SHAPE,
                                                         "amax": unsigned(bits)}))),
        })

    @property
    def latency(self):
        return 5

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB, B = self._in_bits, self._bits
        v = self.i.payload.value
        hi, lo = Signal(signed(IB)), Signal(signed(IB))
        first = Signal(init=1)
        steps = Signal(4)          # one-hot progress of the four finishing steps
        m.d.comb += self.i.ready.eq(~steps.any() & ~self.o.valid)
        new_hi = Mux(first | (v > hi), v, hi)
        new_lo = Mux(first | (v < lo), v, lo)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [hi.eq(new_hi), lo.eq(new_lo), first.eq(self.i.payload.last)]
        m.d.sync += steps.eq(steps << 1)
        with m.If(self.i.valid & self.i.ready & self.i.payload.last):
            m.d.sync += steps.eq(1)
        # 1: max |y|   2: leading-one detector -> s   3: normalize both extremes   4: amax
        mag = Signal(unsigned(IB))
        s = Signal(SHIFT_SHAPE)
        nh, nl = Signal(signed(B)), Signal(signed(B))
        ah, al = abs(hi), abs(lo)
        with m.If(steps[0]):
            m.d.sync += mag.eq(Mux(ah > al, ah, al))
        _, lz = normalize_left(m, mag, IB)
        with m.If(steps[1]):
            m.d.sync += s.eq(Mux(mag == 0, 0, IB - lz) - (B - 1))
        with m.If(steps[2]):
            m.d.sync += [nh.eq(saturate(shift_round_any(hi, s, IB, B), B)),
                         nl.eq(saturate(shift_round_any(lo, s, IB, B), B))]
        an, al2 = abs(nh), abs(nl)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(steps[3]):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.shift.eq(s),
                         self.o.payload.amax.eq(Mux(an > al2, an, al2))]
        return m


class Int8Quantizer(wiring.Component):
    """Pass 2 of ``quant_int8``: ``x_q = clip(shift_round(normalize(y) * k.m, -k.e),
    -127, 127)`` per element, with the row's shift ``s`` (from :class:`RowRange`) and
    ``k = 127 / amax`` (from the scalar unit) carried in every element's payload.

    Stages: 1 normalizing shift, 2 saturate to ``bits``, 3 multiply by ``k.m``
    (``bits`` x 16: one DSP), 4 rounding shift, 5 clip to +-127.

    Parameters
    ----------
    in_bits : int
        Signed width of ``y`` (default 32).
    bits : int
        Normalized width (17, as ``quant_int8``).
    exp_bits : int
        Exponent width of ``k``.

    Ports
    -----
    i : In(stream of {y: signed(in_bits), shift: signed(8), k: scalar, last: 1})
    o : Out(stream of {q: signed(8), last: 1})

    Latency ``latency`` (5) cycles, throughput one element per cycle.
    """

    def __init__(self, *, in_bits=32, bits=17, exp_bits=12):
        _check("in_bits", in_bits, 2, 64)
        _check("bits", bits, 2, min(in_bits, 18))
        _check("exp_bits", exp_bits, 11, 24)
        self._in_bits, self._bits = in_bits, bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "y": signed(in_bits), "shift": SHIFT_SHAPE, "k": scalar_layout(exp_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"q": signed(8), "last": 1}))),
        })

    @property
    def latency(self):
        return 5

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB, B = self._in_bits, self._bits
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        PW = B + 17
        lay = data.StructLayout({"v": signed(IB + B), "e": signed(16), "m": unsigned(16), "last": 1})
        r = [Signal(lay, name=f"q{k + 1}") for k in range(4)]
        with m.If(pipe.en):
            m.d.sync += [r[0].v.eq(shift_round_any(q.y, q.shift.as_signed(), IB, B)),
                         r[0].e.eq(q.k.e.as_signed()), r[0].m.eq(q.k.m), r[0].last.eq(q.last)]
            m.d.sync += [r[1].eq(r[0]), r[1].v.eq(saturate(r[0].v, B))]
            m.d.sync += [r[2].eq(r[1]), r[2].v.eq(r[1].v.as_signed()[:B].as_signed() * r[1].m)]
            # x_q = round(p * 2**e): right by -e, or exactly left by e (then clipped)
            p = r[2].v.as_signed()[:PW].as_signed()
            m.d.sync += [r[3].eq(r[2]), r[3].v.eq(shift_round_any(p, -r[2].e, PW, 8))]
            v = r[3].v.as_signed()
            m.d.sync += [self.o.payload.q.eq(Mux(v > 127, 127, Mux(v < -127, -127, v))),
                         self.o.payload.last.eq(r[3].last)]
        return m
