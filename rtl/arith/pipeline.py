"""The stall-together pipeline shared by the decode units, and small arithmetic helpers.

Every decode unit is a fixed-depth pipeline between an input and an output stream. All
stages advance together when the output register is empty or being read
(``en = ~o.valid | o.ready``), so a unit takes one item per cycle, keeps items in order,
and passes back-pressure straight to its input. The helpers below build the pieces that
several units share (rounding right shift, saturation, leading-one normalizer), each one
the hardware counterpart of a function in :mod:`ternary_core.integer.fixed`.
"""

from amaranth import Cat, Const, Mux, Signal, unsigned


class StallPipeline:
    """Valid bits and the common enable of a ``depth``-stage pipeline from stream ``i``
    to stream ``o``. ``o.valid`` is the last stage's valid bit; the unit drives
    ``o.payload`` from its last register and updates every register only when ``en``.
    """

    def __init__(self, m, i, o, depth):
        if depth < 1:
            raise ValueError(f"pipeline depth must be at least 1, not {depth!r}")
        self.en = Signal(name="pipe_en")
        self.valid = [Signal(name=f"stage{k}_valid") for k in range(depth)]
        m.d.comb += [self.en.eq(~o.valid | o.ready), i.ready.eq(self.en), o.valid.eq(self.valid[-1])]
        with m.If(self.en):
            m.d.sync += self.valid[0].eq(i.valid)
            m.d.sync += [self.valid[k].eq(self.valid[k - 1]) for k in range(1, depth)]


def shift_round_right(v, d, width):
    """``round(v / 2**d)`` (half up) for unsigned or signed ``v`` and unsigned ``d``, as
    ``(((v << 1) >> d) + 1) >> 1``: one barrel shifter and one incrementer. ``width`` is
    the result's width (callers clamp ``d`` so that larger shifts give 0 or -1 as the
    golden model's do)."""
    signed_v = v.shape().signed
    wide = Cat(Const(0, 1), v)          # one extra fraction bit: the rounding bit
    if signed_v:
        wide = wide.as_signed()
    rounded = (((wide >> d) + 1) >> 1)[:width]
    return rounded.as_signed() if signed_v else rounded


def saturate(v, bits):
    """Clamp the signed value ``v`` to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))[:bits].as_signed()


def normalize_left(m, v, width):
    """Shift the unsigned ``v`` left until its top bit is set (six levels of a
    zero-test and a mux for up to 64 bits). Returns ``(shifted, lz)``: the shifted value
    (``width`` bits) and the leading-zero count (``width - bit_length(v)``; garbage for
    ``v == 0``, which callers test separately)."""
    lz_bits = max(1, (width - 1).bit_length())
    cur = v
    lz = []
    for k in reversed(range(lz_bits)):
        step = 1 << k
        if step >= width:
            lz.append(Const(0, 1))
            continue
        top_zero = ~cur[width - step:].any()
        nxt = Signal(unsigned(width), name=f"norm_shl{step}")
        m.d.comb += nxt.eq(Mux(top_zero, (cur << step)[:width], cur))
        lz.append(top_zero)
        cur = nxt
    return cur, Cat(*reversed(lz))


def shift_round_any(v, s, width, max_left):
    """``shift_round(v, s)`` for signed ``s`` (rounding right for ``s > 0``, exact left
    otherwise), with right shifts clamped to ``width`` (they give 0 or -1 from there on,
    as the golden model's) and left shifts to ``max_left`` (callers saturate)."""
    right = s > 0
    r = Mux(s > width, width, s)
    left = Mux(-s > max_left, max_left, -s)
    return Mux(right, shift_round_right(v, r[:len(r)].as_unsigned(), width),
               v << left[:max(1, max_left.bit_length())].as_unsigned())
