"""The vector ops of the integer decode, each vectorized over leading axes (positions).

A vector travels as integers plus one :class:`~.fixed.Scalar` per row (block floating
point: ``real = ints * scale``). Element-wise work is integer multiplies (18x18 bits at
most, one ECP5 DSP, except the attention score and logit rescales: 20x16 and 21x16), adds
and shifts; per-row work goes through the scalar unit.
See docs/integer-decode.md for the widths and the cost of each op.
"""

import numpy as np

from .fixed import (EXP2_FRAC_BITS, MANT_BITS, SIGMOID_FRAC_BITS, SIGMOID_ONE, Scalar,
                    apply_scalar, bit_length, exact_matmul, exp2_neg, saturate, scalar_add,
                    scalar_from_float, scalar_from_int, scalar_mul, scalar_recip, scalar_rsqrt,
                    scalar_shift, shift_round, shift_round_saturate, sigmoid_q15)

INV_127 = scalar_from_float(1.0 / 127.0)
RES_FRAC_BITS = 16      # residual stream: int32, Q15.16
RES_BITS = 32
LOGIT_FRAC_BITS = 16    # logits: int32, Q15.16
LOGIT_BITS = 32
SCORE_FRAC_BITS = EXP2_FRAC_BITS   # attention scores in log2 units, Q.8
SCORE_BITS = 24
ROPE_FRAC_BITS = 14     # cos/sin table: int16, Q1.14


def _rowmax_abs(x):
    return np.abs(x).max(axis=-1, keepdims=True)


def normalize_rows(x, bits):
    """Shift each row so its largest magnitude has exactly ``bits - 1`` bits (a signed
    ``bits``-bit word); return ``(ints, s)`` with ``x ~ ints * 2**s`` (``s`` per row,
    trailing axis kept). A zero row stays zero. Leading-one detector + barrel shifter."""
    s = bit_length(_rowmax_abs(x)) - (bits - 1)
    return saturate(shift_round(x, s), bits), s


def quant_int8(y):
    """Per-row absmax int8 quantizer of integer rows ``y`` (the BitLinear input quantizer).

    ``x_q = round(127 * y / max|y|)``, clipped to [-127, 127], computed as: normalize the
    row to 17-bit signed (shift), one reciprocal of the max (scalar unit), one 17x16
    multiply and a rounding shift per element. Returns ``(x_q int8 array, scale)`` with
    ``y ~ x_q * scale`` (``scale = max|y| / 127``); an all-zero row gives zeros and scale 0.
    """
    y16, s = normalize_rows(y, MANT_BITS + 1)
    amax = _rowmax_abs(y16)
    k = scalar_mul(scalar_recip(scalar_from_int(amax)), scalar_from_int(127))
    xq = np.clip(shift_round(y16 * k.m, -k.e), -127, 127).astype(np.int8)
    scale = scalar_shift(scalar_mul(scalar_from_int(amax), INV_127), s)
    return xq, scale


def norm_quant(x, xs, gain, gain_exp, eps, inv_n):
    """RMSNorm followed by the absmax int8 quantizer, without a per-element division.

    ``x`` (rows of ints) times ``xs`` (a Scalar per row, trailing axis 1) is the input;
    ``gain`` the int16 norm weights with ``g ~ gain * 2**gain_exp``; ``eps`` and ``inv_n``
    (``1/n``) are compile-time scalars. Because absmax is scale-invariant,
    ``x_q = round(127 * g*x / max|g*x|)`` needs no square root; ``1/rms`` only enters the
    returned scale ``r`` with ``RMSNorm(x) ~ x_q * r``:
    ``r = max|g*x|/127 / sqrt(mean(x**2) + eps)`` (HF's eps semantics: inside the root, in
    real units). Returns ``(x_q, r)``.
    """
    x16, s = normalize_rows(x, 16)
    xs = scalar_shift(xs, s)
    xq, qs = quant_int8(x16 * gain)
    ss = (x16 * x16).sum(axis=-1, keepdims=True)          # < n * 2**30
    var = scalar_add(scalar_mul(scalar_mul(scalar_from_int(ss), inv_n), scalar_mul(xs, xs)), eps)
    r = scalar_mul(scalar_mul(qs, xs), scalar_rsqrt(var))
    return xq, scalar_shift(r, gain_exp)


def to_fixed(acc, scale, frac_bits, bits):
    """Rescale integer rows by a per-row scalar into a fixed-point format (the BitLinear
    output rescale: ``scale`` = input scale x weight scale folded into one multiplier)."""
    return apply_scalar(acc, scale, frac_bits, bits)


def rope(x, cos, sin):
    """Rotate pairs ``(x[i], x[i + hd/2])`` of each head by the table's angle.

    ``x``: ints (..., heads, hd); ``cos``/``sin``: int16 Q1.14 of shape (..., 1, hd/2).
    Two multiplies and one rounding shift per element; the scale of ``x`` is unchanged.
    """
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    lo = shift_round(a * cos - b * sin, ROPE_FRAC_BITS)
    hi = shift_round(b * cos + a * sin, ROPE_FRAC_BITS)
    return np.concatenate([lo, hi], axis=-1)


def quant_heads(x, xs):
    """Per-head int8 quantization of ``x`` (..., heads, hd) with row scale ``xs`` (...):
    returns ``(x8, scale)`` with ``scale`` a Scalar of shape (..., heads)."""
    x8, hs = quant_int8(x)
    return x8, scalar_mul(hs[..., 0], Scalar(xs.m[..., None], xs.e[..., None]))


def attention(q8, qs, k8, ks, v8, vs, mask, score_k):
    """Causal softmax attention of int8 queries over an int8 KV cache.

    ``q8`` (..., Tq, hd) int8 with scale ``qs`` (..., Tq); ``k8``/``v8`` (..., Tk, hd)
    int8 with scales ``ks``/``vs`` (..., Tk) (one per position); leading axes are heads.
    ``mask`` (Tq, Tk) bool, True where a query sees a key; ``score_k`` = log2(e)/sqrt(hd)
    (Scalar). Steps, all integer:

    1. ``dot = q8 . k8`` (int8 x int8, 20-bit sums); ``z = dot * (qs*ks*score_k)`` as
       Q.8 log2 units, saturated to 24 bits.
    2. ``e = 2**-(max z - z)``: 256-entry table (Q1.15) and a shift.
    3. ``sum_e``, and ``w = e * vs.m`` aligned to the largest value-scale exponent
       (16-bit weights), ``acc = w . v8`` (32-bit).
    4. output scale ``2**(emax+16) / sum_e`` (scalar reciprocal).

    Returns ``(acc int (..., Tq, hd), scale Scalar (..., Tq))``.
    """
    dot = exact_matmul(q8, np.swapaxes(k8, -1, -2))                        # (..., Tq, Tk)
    c = scalar_mul(scalar_mul(Scalar(qs.m[..., :, None], qs.e[..., :, None]),
                              Scalar(ks.m[..., None, :], ks.e[..., None, :])), score_k)
    z = shift_round_saturate(dot * c.m, -(c.e + SCORE_FRAC_BITS), SCORE_BITS)
    lowest = -(1 << (SCORE_BITS - 1))
    z = np.where(mask, z, lowest)
    zmax = z.max(axis=-1, keepdims=True)
    e = np.where(mask, exp2_neg(zmax - z), 0)                                # Q1.15
    total = e.sum(axis=-1)
    vexp = np.where(mask, vs.e[..., None, :], lowest)
    emax = vexp.max(axis=-1, keepdims=True)
    w = shift_round(e * vs.m[..., None, :], MANT_BITS + emax - vexp)         # < 2**16
    w = np.where(mask, w, 0)
    acc = exact_matmul(w, v8)
    scale = scalar_shift(scalar_recip(scalar_from_int(total)), emax[..., 0] + MANT_BITS)
    return acc, scale


def merge_heads(acc, scale):
    """Bring heads with their own scales (``acc`` (..., heads, hd), ``scale`` (..., heads))
    to one scale per row: normalize each head to 16 bits, multiply by its mantissa, align
    to the largest exponent. Returns ``(ints (..., heads*hd) of 32 bits, Scalar (..., 1))``."""
    a16, s = normalize_rows(acc, 16)
    hs = scalar_shift(scale, s[..., 0])
    live = (hs.m > 0) & (np.abs(a16).max(axis=-1) > 0)
    top = np.where(live, hs.e, -(1 << 20)).max(axis=-1, keepdims=True)
    out = shift_round(a16 * hs.m[..., None], (top - hs.e)[..., None])
    out = np.where(live[..., None], out, 0)
    shape = acc.shape[:-2] + (acc.shape[-2] * acc.shape[-1],)
    one = scalar_from_int(np.ones(top.shape, np.int64), top)
    return out.reshape(shape), one


def relu2_glu(g, gs, u, us):
    """``relu(g)**2 * u`` for BitLinear accumulators ``g``, ``u`` with row scales
    ``gs``, ``us``: ``relu(g)`` normalized to 16 magnitude bits and squared, the square
    normalized to 16 magnitude bits, times ``u`` normalized to signed 16 bits: two 17x17
    multiplies per element. Returns ``(ints of 32 bits, Scalar per row)``."""
    r, s0 = normalize_rows(np.maximum(g, 0), 17)      # non-negative: 16 magnitude bits
    sq, s1 = normalize_rows(r * r, 17)
    u16, s2 = normalize_rows(u, 16)
    scale = scalar_shift(scalar_mul(scalar_mul(gs, gs), us), 2 * s0 + s1 + s2)
    return sq * u16, scale


def silu_glu(g, gs, u, us):
    """``silu(g) * u = g * sigmoid(g) * u`` for BitLinear accumulators ``g``, ``u`` with row
    scales ``gs``, ``us``. ``g`` is normalized to signed 17 bits; its real value enters the
    sigmoid as Q4.12 (one 17x16 multiply by the scale's mantissa, a rounding shift,
    saturation to 17 bits: beyond |x| = 16 the sigmoid is 0 or 1 to 2**-23);
    :func:`~.fixed.sigmoid_q15` gives Q1.15 (table + interpolation); ``g * sigmoid``
    (17x16) is normalized to signed 17 bits and times ``u`` normalized to signed 16 bits
    (17x16). Four multiplies per element. Returns ``(ints of 32 bits, Scalar per row)``,
    the format of :func:`relu2_glu`."""
    gn, s0 = normalize_rows(g, 17)
    g_sc = scalar_shift(gs, s0)
    z = apply_scalar(gn, g_sc, SIGMOID_FRAC_BITS, SIGMOID_FRAC_BITS + 5)
    p, s1 = normalize_rows(gn * sigmoid_q15(z), 17)
    u16, s2 = normalize_rows(u, 16)
    scale = scalar_shift(scalar_mul(g_sc, us), s1 + s2 - (SIGMOID_ONE.bit_length() - 1))
    return p * u16, scale


# The MLP's gated activation for each ``hidden_act`` (config.ACTIVATIONS).
GLUS = {"relu2": relu2_glu, "silu": silu_glu}


def lm_head(x_q, xs, w8, row_scale):
    """int8 x int8 logits with per-row weight scales, as Q15.16 int32.

    ``x_q`` (T, d) int8 with scale ``xs`` (T, 1); ``w8`` (V, d) int8; ``row_scale`` (V,).
    One 21x16 multiply and a shift per logit after the dot product."""
    dot = exact_matmul(x_q, w8.T)                                          # (T, V)
    c = scalar_mul(xs, Scalar(row_scale.m[None, :], row_scale.e[None, :]))
    return apply_scalar(dot, c, LOGIT_FRAC_BITS, LOGIT_BITS)


def embed(e8, row_scale):
    """Embedding rows (int8 with one scale each) into the residual format (Q15.16)."""
    return apply_scalar(e8.astype(np.int64), Scalar(row_scale.m[:, None], row_scale.e[:, None]),
                        RES_FRAC_BITS, RES_BITS)


def residual_add(x, y):
    """Saturating int32 add of the residual stream."""
    return saturate(x + y, RES_BITS)
