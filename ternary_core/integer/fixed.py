"""Fixed-point building blocks of the integer decode: rounding shifts, saturation, and the
*scalar unit* — a 16-bit-mantissa number format for the per-token scale factors.

Everything here is integer arithmetic on int64 numpy arrays (vectorized over any leading
shape). The only float is in building the four ROM tables and in :func:`scalar_from_float`,
which the compiler calls once at load time; the per-token datapath never uses them.

Rounding: :func:`shift_round` adds half an LSB and shifts right arithmetically (round half
up, one adder and a shifter). Saturation: :func:`saturate` clamps to a signed width.

The scalar format ("scalar unit"): a positive value ``m * 2**e`` with an unsigned 16-bit
mantissa ``m`` in ``[2**15, 2**16)`` and a signed exponent ``e`` (a small integer, not
bounded here). Zero is ``m == 0`` (its exponent is a don't-care;
the golden model writes ``E_ZERO``). A product is one 16x16 multiply, a leading-one
detector and a shift; :func:`scalar_recip` and :func:`scalar_rsqrt` are a 128/192-entry
table and one Newton step each (two and three multiplies). They run once per vector per
token, or once per attention score, never in the long per-element loops.
"""

from dataclasses import dataclass

import numpy as np

MANT_BITS = 16
E_ZERO = -1024          # exponent of the scalar zero (below every real exponent)
MAX_SHIFT = 62          # shifts beyond this are clamped: the result is already 0 or -1
EXACT_FLOAT = 1 << 53   # integers below this are exact in float64

RECIP_INDEX_BITS = 7    # 1/f for f in [1, 2): 128 entries of 16 bits
RSQRT_INDEX_BITS = 6    # 1/sqrt(f) for f in [1, 4): 192 entries of 16 bits (step 1/64)
EXP2_FRAC_BITS = 8      # 2**-f for f in [0, 1) in steps of 1/256: 256 entries of 16 bits
EXP2_ONE = 1 << 15      # the table's 1.0
SIGMOID_FRAC_BITS = 12  # the sigmoid's input: Q4.12, saturated to 17 bits signed (|x| < 16)
SIGMOID_STEP_BITS = 4   # sigmoid(x) for x in [0, 16] in steps of 1/16: 257 entries of 16 bits
SIGMOID_ONE = 1 << 15   # the table's 1.0 (Q1.15, as the exp2 table)


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def shift_round(x, s):
    """``round(x / 2**s)`` (half up) for ``s >= 0``; ``x * 2**-s`` for ``s < 0``.

    ``x`` and ``s`` are integer arrays (broadcast). Left shifts are exact; the caller
    saturates if the result can leave its width.
    """
    x = _i64(x)
    if np.ndim(s) == 0:
        s = int(s)
        if s > 0:
            s = min(s, MAX_SHIFT)
            return (x + (1 << (s - 1))) >> s
        return x << min(-s, MAX_SHIFT)
    s = _i64(s)
    right = np.minimum(np.maximum(s, 1), MAX_SHIFT)
    down = (x + (np.int64(1) << (right - 1))) >> right
    up = x << np.minimum(np.maximum(-s, 0), MAX_SHIFT)
    return np.where(s > 0, down, up)


def saturate(x, bits):
    """Clamp ``x`` to the signed ``bits``-bit range."""
    lim = 1 << (bits - 1)
    return np.minimum(np.maximum(_i64(x), -lim), lim - 1)


def bit_length(x):
    """Number of bits of ``|x|`` (0 for 0): the leading-one detector."""
    x = np.abs(_i64(x))
    if x.size and x.max() < EXACT_FLOAT:
        # frexp of an exactly representable integer is its bit length (fast path only)
        return np.frexp(x.astype(np.float64))[1].astype(np.int64)
    n = np.zeros(x.shape, np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = x >= (np.int64(1) << step)
        x = np.where(big, x >> step, x)
        n += np.where(big, step, 0)
    return n + (x > 0)


def exact_matmul(a, b):
    """The integer matrix product ``a @ b`` (int64). When every partial sum is below
    2**53 in magnitude, float64 BLAS computes it exactly and much faster than numpy's
    integer loop; otherwise the int64 product is used. Either way the result is exact."""
    a, b = _i64(a), _i64(b)
    bound = (int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * a.shape[-1])
    if bound < EXACT_FLOAT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


@dataclass(frozen=True)
class Scalar:
    """Positive values ``m * 2**e`` (arrays of any common shape); see the module docstring."""

    m: np.ndarray
    e: np.ndarray

    def __getitem__(self, idx):
        return Scalar(self.m[idx], self.e[idx])

    @property
    def shape(self):
        return np.shape(self.m)

    def to_float(self):
        """Host-side only (measuring and tests)."""
        return np.where(self.m == 0, 0.0, np.ldexp(self.m.astype(np.float64), self.e))


def scalar_from_int(x, e=0):
    """The scalar nearest ``x * 2**e`` for non-negative integers ``x`` (round half up)."""
    x = _i64(x)
    s = bit_length(x) - MANT_BITS
    m = shift_round(x, s)
    over = m >> MANT_BITS                 # 1 where rounding carried into a 17th bit
    zero = x == 0
    e = np.where(zero, E_ZERO, _i64(e) + s + over)
    m = np.where(zero, 0, m >> over)
    return Scalar(m if m.shape == e.shape else np.broadcast_to(m, e.shape), e)


def scalar_shift(a, k):
    """``a * 2**k`` (exponent add)."""
    return Scalar(a.m, np.where(a.m == 0, E_ZERO, a.e + _i64(k)))


def scalar_mul(a, b):
    """``a * b``: one 16x16 multiply, then renormalize."""
    return scalar_from_int(a.m * b.m, a.e + b.e)


def scalar_add(a, b):
    """``a + b`` for positive scalars: align to the larger exponent with 16 guard bits."""
    top = np.maximum(a.e, b.e)
    sa = shift_round(a.m << MANT_BITS, top - a.e)
    sb = shift_round(b.m << MANT_BITS, top - b.e)
    return scalar_from_int(sa + sb, top - MANT_BITS)


def _recip_table():
    i = np.arange(1 << RECIP_INDEX_BITS)
    f = 1.0 + (i + 0.5) / (1 << RECIP_INDEX_BITS)
    return np.round(2.0 ** 16 / f).astype(np.int64)


def _rsqrt_table():
    # index k = m2 >> (17 - 2 - RSQRT_INDEX_BITS) for m2 in [2**15, 2**17): f = m2 / 2**15
    lo, hi = 1 << RSQRT_INDEX_BITS, 4 << RSQRT_INDEX_BITS
    k = np.arange(lo, hi)
    f = (k + 0.5) / (1 << RSQRT_INDEX_BITS)
    return np.round(2.0 ** 16 / np.sqrt(f)).astype(np.int64)


def _exp2_table():
    i = np.arange(1 << EXP2_FRAC_BITS)
    return np.round(EXP2_ONE * 2.0 ** (-i / (1 << EXP2_FRAC_BITS))).astype(np.int64)


def _sigmoid_table():
    x = np.arange((16 << SIGMOID_STEP_BITS) + 1) / (1 << SIGMOID_STEP_BITS)
    return np.round(SIGMOID_ONE / (1.0 + np.exp(-x))).astype(np.int64)


RECIP_TABLE = _recip_table()    # Q0.16 of 1/f at the bucket midpoints
RSQRT_TABLE = _rsqrt_table()    # Q0.16 of 1/sqrt(f) at the bucket midpoints
EXP2_TABLE = _exp2_table()      # Q1.15 of 2**-f
SIGMOID_TABLE = _sigmoid_table()  # Q1.15 of 1/(1 + e**-x), x = i/16 for i in 0..256


def scalar_recip(a):
    """``1 / a``: table of ``1/f`` on the top 7 fraction bits, one Newton step.

    With ``f = m / 2**15`` in ``[1, 2)``: ``y0 = T[f]`` (Q0.16), ``y1 = y0 * (2 - f*y0)``.
    Relative error below 2**-15. ``1 / 0`` is returned as 0 (callers only divide by a
    sum that contains a 1.0, or scale a vector that is then all zero).
    """
    m = a.m
    idx = np.clip((m >> (MANT_BITS - 1 - RECIP_INDEX_BITS)) - (1 << RECIP_INDEX_BITS),
                  0, (1 << RECIP_INDEX_BITS) - 1)
    y0 = RECIP_TABLE[idx]
    t = m * y0                                   # ~ 2**31 * f * y
    d = shift_round((np.int64(1) << 32) - t, 16)  # ~ 2**16 * (2 - f*y0)
    y1 = shift_round(y0 * d, 15)                 # Q0.16 of 1/f
    r = scalar_from_int(y1, -31 - a.e)
    return Scalar(np.where(m == 0, 0, r.m), np.where(m == 0, E_ZERO, r.e))


def scalar_rsqrt(a):
    """``1 / sqrt(a)``: table of ``1/sqrt(f)`` (64 entries per octave), one Newton step.

    The exponent is made odd (so ``15 + e`` halves exactly) by doubling the mantissa
    when needed; ``f = m2 / 2**15`` lies in ``[1, 4)``. ``y1 = y0 * (3 - f*y0**2) / 2``.
    Relative error below 2**-15. ``rsqrt(0)`` is returned as 0 (only reachable with
    ``eps == 0`` and an all-zero vector, whose quantized value is zero anyway).
    """
    m, e = a.m, a.e
    even = (e % 2) == 0
    m2 = np.where(even, m << 1, m)
    e2 = np.where(even, e - 1, e)
    idx = np.clip((m2 >> (MANT_BITS - 1 - RSQRT_INDEX_BITS)) - (1 << RSQRT_INDEX_BITS),
                  0, RSQRT_TABLE.size - 1)
    y0 = RSQRT_TABLE[idx]
    s = shift_round(y0 * y0, 16)                  # Q0.16 of y0**2
    t = m2 * s                                    # ~ 2**31 * f * y0**2
    d = shift_round(3 * (np.int64(1) << 31) - t, 16)
    y1 = shift_round(y0 * d, 16)                  # Q0.16 of 1/sqrt(f)
    r = scalar_from_int(y1, -16 - (15 + e2) // 2)
    return Scalar(np.where(m == 0, 0, r.m), np.where(m == 0, E_ZERO, r.e))


def scalar_from_float(x):
    """Compile-time only: the scalar nearest the positive float(s) ``x``."""
    x = np.asarray(x, dtype=np.float64)
    f, k = np.frexp(x)                     # x = f * 2**k, f in [0.5, 1)
    m = np.round(f * (1 << MANT_BITS)).astype(np.int64)
    over = m >= (1 << MANT_BITS)
    m = np.where(over, m >> 1, m)
    e = (k - MANT_BITS + over).astype(np.int64)
    zero = x <= 0
    return Scalar(np.where(zero, 0, m), np.where(zero, E_ZERO, e))


def shift_round_saturate(x, s, bits):
    """:func:`shift_round` then :func:`saturate`, saturating left shifts that would leave
    ``bits`` (their overflow is seen by the leading-one detector, never wrapped)."""
    x, s = np.broadcast_arrays(_i64(x), _i64(s))
    over = (s < 0) & (x != 0) & (bit_length(x) - s >= bits)
    lim = 1 << (bits - 1)
    y = shift_round(np.where(over, 0, x), np.where(over, 0, s))
    return np.where(over, np.where(x < 0, -lim, lim - 1), saturate(y, bits))


def apply_scalar(x, a, frac_bits, bits):
    """``x * a`` as a fixed-point integer with ``frac_bits`` fraction bits, saturated to
    ``bits``: one multiply by the mantissa and one rounding shift per element.

    ``a`` broadcasts against ``x`` (e.g. one scalar per row: pass ``a`` with a trailing
    axis of 1).
    """
    return shift_round_saturate(_i64(x) * a.m, -(a.e + frac_bits), bits)


def exp2_neg(d, frac_bits=EXP2_FRAC_BITS):
    """``2**(-d / 2**frac_bits)`` in Q1.15 for integers ``d >= 0``: the table gives the
    fraction, a right shift (rounded) the integer part; 0 from 2**-16 on."""
    d = _i64(d)
    ip, fp = d >> frac_bits, d & ((1 << frac_bits) - 1)
    v = shift_round(EXP2_TABLE[fp], np.minimum(ip, MAX_SHIFT))
    return np.where(ip > 16, 0, v)


def sigmoid_q15(z):
    """``1 / (1 + e**-x)`` in Q1.15 for ``x = z / 2**12`` (Q4.12 integers, any sign).

    ``|z|`` is clamped to ``2**16 - 1`` (just below 16); its top 8 bits index the 257-entry
    table (steps of 1/16), its low 8 bits interpolate linearly between two neighbours (one
    10x8 multiply: neighbours differ by at most 512) with a rounding shift; a negative
    input takes ``1.0 - sigmoid(|x|)``. Error below 8e-5 for every ``z``: entries rounded
    to 2**-16, the interpolation's rounding 2**-16, linear interpolation over a step h of
    1/16 h**2/8 * max|sigmoid''| = 4.7e-5, the clamp at 16 1.2e-7
    (``test_sigmoid_q15_is_within_8e-5``); see docs/integer-decode.md."""
    z = _i64(z)
    step = SIGMOID_FRAC_BITS - SIGMOID_STEP_BITS
    a = np.minimum(np.abs(z), (1 << (SIGMOID_FRAC_BITS + 4)) - 1)
    i, f = a >> step, a & ((1 << step) - 1)
    lo = SIGMOID_TABLE[i]
    s = lo + shift_round((SIGMOID_TABLE[i + 1] - lo) * f, step)
    return np.where(z < 0, SIGMOID_ONE - s, s)
