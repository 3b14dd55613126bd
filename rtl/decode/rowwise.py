"""Row-wise ops of the integer decode, which need a whole row's range first, bit-exact to
:mod:`ternary_core.integer.ops`: the range pass of ``normalize_rows`` (:class:`RowRange`)
and the element passes that follow it — the int8 absmax quantizer (``quant_int8``), the
norm's gain and sum of squares (``norm_quant``), the head merge (``merge_heads``) and the
squared-ReLU GLU (``relu2_glu``).

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
    relu : bool
        Take ``max(y, 0)`` instead of ``y`` (the GLU's ``relu(g)``).
    square : bool
        Also give ``sq_shift``, the shift ``normalize_rows(r * r, bits)`` would find for
        the squares of the normalized (non-negative) row ``r``: its maximum is
        ``amax**2``, so no second pass over the squares is needed. One more multiply.

    Ports
    -----
    i : In(stream of {value: signed(in_bits), last: 1})
    o : Out(stream of {shift: signed(8), amax: unsigned(bits), sq_shift: signed(8)})
        ``sq_shift`` is 0 unless ``square``.

    Throughput one element per cycle; the result is valid ``latency`` (5, or 7 with
    ``square``) cycles after the ``last`` handshake (counted as the pipelines count: a
    one-stage unit has 1), and ``i`` waits until it is read.
    """

    def __init__(self, *, in_bits=32, bits=17, relu=False, square=False):
        _check("in_bits", in_bits, 2, 64)
        _check("bits", bits, 2, min(in_bits, 18) if square else in_bits)
        self._in_bits, self._bits, self._relu, self._square = in_bits, bits, bool(relu), bool(square)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"value": signed(in_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "shift": SHIFT_SHAPE, "amax": unsigned(bits), "sq_shift": SHIFT_SHAPE}))),
        })

    @property
    def latency(self):
        return 7 if self._square else 5

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB, B = self._in_bits, self._bits
        v = self.i.payload.value
        if self._relu:
            v = Mux(v < 0, 0, v)
        hi, lo = Signal(signed(IB)), Signal(signed(IB))
        first = Signal(init=1)
        steps = Signal(self.latency - 1)   # one-hot progress of the finishing steps
        m.d.comb += self.i.ready.eq(~steps.any() & ~self.o.valid)
        new_hi = Mux(first | (v > hi), v, hi)
        new_lo = Mux(first | (v < lo), v, lo)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [hi.eq(new_hi), lo.eq(new_lo), first.eq(self.i.payload.last)]
        m.d.sync += steps.eq(steps << 1)
        with m.If(self.i.valid & self.i.ready & self.i.payload.last):
            m.d.sync += steps.eq(1)
        # 1: max |y|   2: leading-one detector -> s   3: normalize both extremes   4: amax
        # (square: 5: amax**2   6: its leading-one detector -> sq_shift)
        mag = Signal(unsigned(IB))
        s = Signal(SHIFT_SHAPE)
        nh, nl = Signal(signed(B)), Signal(signed(B))
        amax = Signal(unsigned(B))
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
        amax_now = Mux(an > al2, an, al2)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        if not self._square:
            with m.If(steps[3]):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.shift.eq(s),
                             self.o.payload.amax.eq(amax_now), self.o.payload.sq_shift.eq(0)]
        else:
            SQ = 2 * B
            sq = Signal(unsigned(SQ))
            with m.If(steps[3]):
                m.d.sync += amax.eq(amax_now)
            with m.If(steps[4]):
                m.d.sync += sq.eq(amax * amax)
            _, sq_lz = normalize_left(m, sq, SQ)
            with m.If(steps[5]):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.shift.eq(s),
                             self.o.payload.amax.eq(amax),
                             self.o.payload.sq_shift.eq(Mux(sq == 0, 0, SQ - sq_lz) - (B - 1))]
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


class Relu2Glu(wiring.Component):
    """Pass 2 of ``relu2_glu``: ``normalize17(normalize17(relu(g))**2) * normalize16(u)``
    per element, the row shifts ``s0`` (of ``relu(g)``, from ``RowRange(relu=True,
    square=True)``), ``s1`` (its ``sq_shift``) and ``s2`` (of ``u``, from
    ``RowRange(bits=16)``) carried in every element's payload.

    Stages: 1 shifts of ``g`` and ``u``, 2 saturate, 3 square (17 x 17: one DSP),
    4 shift, 5 saturate, 6 product with ``u`` (17 x 16: one DSP). The result fits 32 bits.

    Ports
    -----
    i : In(stream of {g, u: signed(in_bits), s0, s1, s2: signed(8), last: 1})
    o : Out(stream of {value: signed(32), last: 1})

    Latency ``latency`` (6) cycles, throughput one element per cycle. The row scale
    (``gs**2 * us * 2**(2*s0 + s1 + s2)``) is three scalar-unit ops.
    """

    def __init__(self, *, in_bits=32):
        _check("in_bits", in_bits, 17, 64)
        self._in_bits = in_bits
        sh = SHIFT_SHAPE
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "g": signed(in_bits), "u": signed(in_bits), "s0": sh, "s1": sh, "s2": sh,
                "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": signed(32), "last": 1}))),
        })

    @property
    def latency(self):
        return 6

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB = self._in_bits
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        lay = data.StructLayout({"r": signed(IB + 17), "u": signed(IB + 16), "s1": SHIFT_SHAPE,
                                 "last": 1})
        r = [Signal(lay, name=f"g{k + 1}") for k in range(5)]
        relu_g = Mux(q.g < 0, 0, q.g)
        with m.If(pipe.en):
            m.d.sync += [r[0].r.eq(shift_round_any(relu_g, q.s0.as_signed(), IB, 17)),
                         r[0].u.eq(shift_round_any(q.u, q.s2.as_signed(), IB, 16)),
                         r[0].s1.eq(q.s1), r[0].last.eq(q.last)]
            m.d.sync += [r[1].eq(r[0]), r[1].r.eq(saturate(r[0].r, 17)),
                         r[1].u.eq(saturate(r[0].u, 16))]
            r17 = r[1].r.as_signed()[:17].as_signed()
            m.d.sync += [r[2].eq(r[1]), r[2].r.eq(r17 * r17)]
            sq = r[2].r.as_signed()[:35].as_signed()
            m.d.sync += [r[3].eq(r[2]), r[3].r.eq(shift_round_any(sq, r[2].s1.as_signed(), 35, 17))]
            m.d.sync += [r[4].eq(r[3]), r[4].r.eq(saturate(r[3].r, 17))]
            m.d.sync += [self.o.payload.value.eq(r[4].r.as_signed()[:17].as_signed()
                                                 * r[4].u.as_signed()[:16].as_signed()),
                         self.o.payload.last.eq(r[4].last)]
        return m


class NormGain(wiring.Component):
    """The middle pass of ``norm_quant``: ``x16 = normalize16(x)`` (the row's shift from
    ``RowRange(bits=16)``), then per element ``x16 * gain`` (what the quantizer's range and
    quantize passes read) and the row's sum of squares ``sum(x16 * x16)`` (the variance).

    Stages: 1 shift, 2 saturate to 16 bits, 3 the two products (16 x 16: one DSP each),
    4 output and accumulate. ``sumsq`` of the element marked ``last`` is the row's sum
    (the accumulator then restarts); on other elements it is the running sum.

    Parameters
    ----------
    in_bits : int
        Signed width of ``x`` (default 32, the residual stream).
    sum_bits : int
        Width of the sum of squares (default 48: 2**30 per element, rows up to 2**17).

    Ports
    -----
    i : In(stream of {x: signed(in_bits), gain: signed(16), shift: signed(8), last: 1})
    o : Out(stream of {value: signed(32), sumsq: unsigned(sum_bits), last: 1})

    Latency ``latency`` (4) cycles, throughput one element per cycle.
    """

    def __init__(self, *, in_bits=32, sum_bits=48):
        _check("in_bits", in_bits, 16, 64)
        _check("sum_bits", sum_bits, 31, 64)
        self._in_bits, self._sum_bits = in_bits, sum_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "x": signed(in_bits), "gain": signed(16), "shift": SHIFT_SHAPE, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "value": signed(32), "sumsq": unsigned(sum_bits), "last": 1}))),
        })

    @property
    def latency(self):
        return 4

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB = self._in_bits
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        lay = data.StructLayout({"v": signed(IB + 16), "gain": signed(16), "sq": unsigned(32),
                                 "last": 1})
        r = [Signal(lay, name=f"n{k + 1}") for k in range(3)]
        acc = Signal(unsigned(self._sum_bits))
        with m.If(pipe.en):
            m.d.sync += [r[0].v.eq(shift_round_any(q.x, q.shift.as_signed(), IB, 16)),
                         r[0].gain.eq(q.gain), r[0].last.eq(q.last)]
            m.d.sync += [r[1].eq(r[0]), r[1].v.eq(saturate(r[0].v, 16))]
            x16 = r[1].v.as_signed()[:16].as_signed()
            m.d.sync += [r[2].eq(r[1]), r[2].v.eq(x16 * r[1].gain.as_signed()),
                         r[2].sq.eq((x16 * x16)[:32])]
            total = acc + r[2].sq
            m.d.sync += [self.o.payload.value.eq(r[2].v.as_signed()[:32]),
                         self.o.payload.sumsq.eq(total), self.o.payload.last.eq(r[2].last)]
            with m.If(pipe.valid[-2]):
                m.d.sync += acc.eq(Mux(r[2].last, 0, total))
        return m


class MergeAlign(wiring.Component):
    """The element pass of ``merge_heads``: each head's accumulators normalized to 16
    bits (its shift from ``RowRange(bits=16)``), times the head's scale mantissa ``m``,
    shifted right (rounded) by ``rshift = top - e`` to the largest live head exponent.
    A head that is not live (zero scale or all-zero row) needs no mask: its products are
    zero already.

    The per-head parameters come from the sequencer: ``e`` is a scalar-unit ``SHIFT`` of
    the head's scale by its row shift, ``top`` the largest ``e`` over the live heads (a
    compare; a head is live when its ``m`` and its ``RowRange`` amax are non-zero).

    Stages: 1 shift, 2 saturate to 16 bits, 3 multiply (16 x 16: one DSP), 4 rounding
    right shift (amounts past 33 act as 33: the result is 0 or -1 from there on).

    Ports
    -----
    i : In(stream of {acc: signed(in_bits), shift: signed(8), m: unsigned(16),
        rshift: unsigned(8), last: 1})
    o : Out(stream of {value: signed(32), last: 1})

    Latency ``latency`` (4) cycles, throughput one element per cycle.
    """

    def __init__(self, *, in_bits=32):
        _check("in_bits", in_bits, 16, 64)
        self._in_bits = in_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "acc": signed(in_bits), "shift": SHIFT_SHAPE, "m": unsigned(16),
                "rshift": unsigned(8), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": signed(32), "last": 1}))),
        })

    @property
    def latency(self):
        return 4

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        IB = self._in_bits
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        q = self.i.payload
        lay = data.StructLayout({"v": signed(IB + 16), "m": unsigned(16), "rshift": unsigned(8),
                                 "last": 1})
        r = [Signal(lay, name=f"h{k + 1}") for k in range(3)]
        PW = 33                                  # the signed 16 x 16 product
        with m.If(pipe.en):
            m.d.sync += [r[0].v.eq(shift_round_any(q.acc, q.shift.as_signed(), IB, 16)),
                         r[0].m.eq(q.m), r[0].rshift.eq(Mux(q.rshift > PW, PW, q.rshift)),
                         r[0].last.eq(q.last)]
            m.d.sync += [r[1].eq(r[0]), r[1].v.eq(saturate(r[0].v, 16))]
            m.d.sync += [r[2].eq(r[1]), r[2].v.eq(r[1].v.as_signed()[:16].as_signed() * r[1].m)]
            p = r[2].v.as_signed()[:PW].as_signed()
            m.d.sync += [self.o.payload.value.eq(shift_round_right(p, r[2].rshift, PW)),
                         self.o.payload.last.eq(r[2].last)]
        return m
