"""Where the integer decode's error comes from, op by op (docs/integer-error-analysis.md).

    python -m ternary_core.integer.error_budget --model M --ids FILE [--windows N]
                                                [--experiments] [--json]

A measuring tool for the host, not part of the decode. Over windows of token ids it runs

- the float reference's window pass (:meth:`BitNetRunner.score`'s ops, re-traced here so
  every intermediate is kept; its logits are checked equal to ``score``'s), and
- the integer decode's window pass (:meth:`IntegerRunner.score`'s ops from :mod:`.ops`,
  re-traced here; its logits are checked *bit-identical* to ``score``'s),

and reports, per layer and per op, two relative errors ``|int - float| / |float|`` (L2 over
the op's output row, averaged over heads and over the positions of a bucket):

- **same input**: the integer op fed the float reference's own input for that op, converted
  the way the integer path holds it (the residual as Q15.16; a BitLinear's input as the
  reference's own int8 codes and scale; RoPE's input as the reference's accumulators; the
  other vectors as 24/31-bit integer rows with one scale per position, as the accumulators
  and the GLU/merge outputs are). Ops that need the integer path's internal state get it
  from the float input: the K/V cache of the same-input attention ops is the float K/V of
  every position quantized per (kv head, position) exactly as the integer path writes it.
- **compounded**: the integer decode's own intermediate against the float one.

Experiments (``--experiments``) attribute the top-1 disagreement: the float reference with
*one* integer rounding added (e.g. int8 q/k/v per head), and the integer decode with one
format widened or one op done in float (:class:`Variant`).
"""

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import TernaryError
from ..model import names
from ..model.names import GATE_UP, QKV
from ..quant import dequantize_output, quantize_activations
from ..reference import BitNetRunner, glu, rms_norm, rope_tables, rotate_half
from . import IntegerRunner, compile_model, ops
from .fixed import (EXP2_ONE, MANT_BITS, Scalar, exact_matmul, exp2_neg, scalar_from_float,
                    scalar_from_int, scalar_mul, scalar_recip, scalar_shift, shift_round,
                    shift_round_saturate)

LOG2E = np.log2(np.e)
BUCKETS = (0, 1, 16, 64, 128, 256, 512, 1 << 30)   # position buckets [lo, hi)


# ---------------------------------------------------------------- helpers (host-side floats)

def rel_err(a, b, axis=-1):
    """Per-row relative L2 error ``|a - b| / |b|`` (0 where both rows are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = np.sqrt(((a - b) ** 2).sum(axis=axis))
    den = np.sqrt((b ** 2).sum(axis=axis))
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num > 0, np.inf, 0.0))


def to_ints(x, bits):
    """Float rows -> ``(int64 rows, Scalar (..., 1))``, one power-of-two scale per row with
    the row's largest magnitude at ``bits - 1`` bits: how the integer path holds a vector
    (accumulators, the GLU and merge outputs) when it is given a float one."""
    x = np.asarray(x, np.float64)
    amax = np.abs(x).max(axis=-1, keepdims=True)
    s = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1))) + 2 - bits, 0)
    s = s.astype(np.int64)
    ints = np.round(np.ldexp(x, -s)).astype(np.int64)
    return ints, scalar_from_int(np.ones(s.shape, np.int64), s)


def to_q16(x):
    """A float residual as the integer path's Q15.16 int32."""
    return ops.saturate(np.round(np.asarray(x, np.float64) * 2.0 ** ops.RES_FRAC_BITS)
                        .astype(np.int64), ops.RES_BITS)


def sf(s):
    """Scalar -> float64 (host-side)."""
    return s.to_float()


# ---------------------------------------------------------------- the float reference, traced

@dataclass
class FloatFake:
    """Integer roundings added to the float reference one at a time (attribution).

    ``qkv_bits``: q, k (after RoPE) and v rounded per (head, position) to that many bits,
    absmax, as the integer path's KV cache does (0: off). ``exp2``: softmax weights through
    Q.8 log2 scores and the 256-entry table. ``embed8`` / ``head8``: int8 embedding / lm_head
    rows (per-row absmax, as compiled). ``head_in8``: the final norm's output rounded to int8.
    """

    qkv_bits: int = 0
    exp2: bool = False
    embed8: bool = False
    head8: bool = False
    head_in8: bool = False


def _fake_quant(x, bits):
    """Per-row absmax rounding to ``bits`` (in the dtype of ``x``)."""
    qmax = (1 << (bits - 1)) - 1
    amax = np.abs(x).max(axis=-1, keepdims=True)
    s = np.where(amax > 0, amax / qmax, 1).astype(x.dtype)
    return (np.round(x / s) * s).astype(x.dtype)


def _int8_rows_float(w):
    from .compile import int8_rows
    q, s = int8_rows(w)
    return (q.astype(np.float64) * sf(s)[:, None]).astype(np.float32)


def float_trace(model, ids, fake=None):
    """The float reference's window pass over ``ids`` (the ops of ``BitNetRunner.score``,
    float32), keeping every intermediate. Returns ``(logits (T, vocab) float32, trace)``
    with ``trace["layers"][i]`` a dict of named arrays (see :func:`_float_layer`)."""
    fake = fake or FloatFake()
    c, f = model.config, model.floats
    ids = np.asarray(ids, np.int64)
    n = ids.size
    cos, sin = rope_tables(c, n)
    emb = f[names.EMBED + ".weight"]
    if fake.embed8:
        emb = _int8_rows_float(emb)
    x = emb[ids].astype(np.float32)
    tr = {"ids": ids, "embed": x, "layers": []}
    for i in range(c.num_hidden_layers):
        x, rec = _float_layer(model, i, x, cos, sin, fake)
        tr["layers"].append(rec)
    h = rms_norm(x, f[names.FINAL_NORM + ".weight"], c.rms_norm_eps)
    tr["x_final"], tr["h_final"] = x, h
    if fake.head_in8:
        xq, s = quantize_activations(h)
        h = (xq.astype(np.float32) / s).astype(np.float32)
    head = f[(names.EMBED if c.tie_word_embeddings else names.LM_HEAD) + ".weight"]
    if fake.head8:
        head = _int8_rows_float(head)
    logits = h @ head.T
    tr["logits"] = logits
    return logits, tr


def _float_bitlinear(model, layer_names, h, rec, tag):
    xq, s = quantize_activations(h)
    rec[tag + "_xq"], rec[tag + "_s"] = xq, s
    out = []
    for nm in layer_names:
        b = model.bitlinears[nm]
        acc = xq.astype(np.float32) @ b.trits.T.astype(np.float32)
        out.append(dequantize_output(acc, s, b.weight_scale))
    return out


def _float_layer(model, i, x, cos, sin, fake):
    """One decoder layer as :meth:`BitNetRunner._forward` + ``score``'s ``attend``. Keys:
    x_in, h_in (input norm), q k v (T, n*hd), q_rot k_rot v_h (heads, T, hd), scores (nh, T,
    T; log2 units, -inf where masked), probs, attn (T, nh*hd), h_sub, o, x_mid, h_post, g, u,
    a (GLU), h_ffn, d, x_out; ``<norm>_xq``/``<norm>_s``: the int8 codes and scale the
    reference feeds each BitLinear stack (in, sub, post, ffn)."""
    c, f = model.config, model.floats
    eps = c.rms_norm_eps
    p = names.layer(i)
    n = x.shape[0]
    nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    rec = {"x_in": x}
    h = rms_norm(x, f[p + names.INPUT_NORM + ".weight"], eps)
    rec["h_in"] = h
    q, k, v = _float_bitlinear(model, [p + nm for nm in QKV], h, rec, "in")
    rec.update(q=q, k=k, v=v)
    q = q.reshape(n, nh, hd).transpose(1, 0, 2)
    k = k.reshape(n, nkv, hd).transpose(1, 0, 2)
    v = v.reshape(n, nkv, hd).transpose(1, 0, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rec.update(q_rot=q, k_rot=k, v_h=v)
    if fake.qkv_bits:
        q, k, v = (_fake_quant(t, fake.qkv_bits) for t in (q, k, v))
    keys, vals = np.repeat(k, nh // nkv, axis=0), np.repeat(v, nh // nkv, axis=0)
    causal = np.triu(np.ones((n, n), dtype=bool), 1)
    scores = np.einsum("hqd,hkd->hqk", q, keys) * np.float32(hd ** -0.5)
    scores[:, causal] = -np.inf
    rec["scores"] = scores.astype(np.float64) * LOG2E
    if fake.exp2:
        z = np.round(np.where(causal, 0, rec["scores"]) * 256).astype(np.int64)
        z = np.where(causal, -(1 << 40), z)
        e = np.where(causal, 0, exp2_neg(z.max(-1, keepdims=True) - z)).astype(np.float64)
        probs = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    else:
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = (scores / scores.sum(axis=-1, keepdims=True)).astype(np.float32)
    rec["probs"] = probs
    attn = np.einsum("hqk,hkd->hqd", probs, vals).transpose(1, 0, 2).reshape(n, nh * hd)
    rec["attn"] = attn
    attn = rms_norm(attn, f[p + names.ATTN_SUB_NORM + ".weight"], eps)
    rec["h_sub"] = attn
    (o,) = _float_bitlinear(model, [p + names.O_PROJ], attn, rec, "sub")
    x = x + o
    rec.update(o=o, x_mid=x)
    h = rms_norm(x, f[p + names.POST_ATTN_NORM + ".weight"], eps)
    rec["h_post"] = h
    g, u = _float_bitlinear(model, [p + nm for nm in GATE_UP], h, rec, "post")
    a = glu(c.hidden_act, g, u)
    rec.update(g=g, u=u, a=a)
    a = rms_norm(a, f[p + names.FFN_SUB_NORM + ".weight"], eps)
    rec["h_ffn"] = a
    (d,) = _float_bitlinear(model, [p + names.DOWN_PROJ], a, rec, "ffn")
    x = x + d
    rec.update(d=d, x_out=x)
    return x, rec


# ---------------------------------------------------------------- the integer decode, traced

@dataclass(frozen=True)
class Variant:
    """One change to the integer decode, for experiments (the defaults are the decode as
    specified, bit-identical to :class:`IntegerRunner`).

    ``qk_bits`` / ``v_bits``: width of the per-head q, k / v quantizer (the KV cache).
    ``frac_bits``: fraction bits of the log2 scores and of the exp2 table's index (the table
    has ``2**frac_bits`` entries). ``float_attention``: scores, softmax and P.V in float64
    from the integer path's q/k/v accumulators (no int8, no table). ``float_embed`` /
    ``float_head``: embedding rows / final norm + lm_head in float64. ``embed_bits`` /
    ``head_bits``: width of the embedding rows / of the lm_head rows and its input (per-row
    absmax, emulated in float64 when not 8). ``float_norm``: every RMSNorm + int8 quantizer
    gives the float reference's codes for the integer path's input (float64 norm, the
    reference's absmax quantizer). ``rope_extra_bits``: RoPE keeps that many fraction bits
    below the accumulator's LSB (its rounding shift is 14 - n instead of 14).
    """

    qk_bits: int = 8
    v_bits: int = 8
    frac_bits: int = ops.SCORE_FRAC_BITS
    score_bits: int = ops.SCORE_BITS
    float_attention: bool = False
    float_embed: bool = False
    float_head: bool = False
    embed_bits: int = 8
    head_bits: int = 8
    float_norm: bool = False
    rope_extra_bits: int = 0


DEFAULT = Variant()


def quant_heads_bits(x, xs, bits):
    """:func:`ops.quant_heads` at ``bits`` (8: the op itself). Wider widths are an experiment
    (the host-side absmax rounding in float64, per (position, head) as the op does)."""
    if bits == 8:
        return ops.quant_heads(x, xs)
    qmax = (1 << (bits - 1)) - 1
    amax = np.abs(x).max(axis=-1).astype(np.float64)
    step = np.where(amax > 0, amax / qmax, 0.0)
    xq = np.round(x / np.where(step > 0, step, 1)[..., None]).astype(np.int64)
    return xq, scalar_mul(scalar_from_float(step), Scalar(xs.m[..., None], xs.e[..., None]))


def _exp2_table(frac_bits):
    i = np.arange(1 << frac_bits)
    return np.round(EXP2_ONE * 2.0 ** (-i / (1 << frac_bits))).astype(np.int64)


def exp2_neg_bits(d, frac_bits):
    """:func:`fixed.exp2_neg` with a ``2**frac_bits``-entry table (8: the op itself)."""
    if frac_bits == ops.SCORE_FRAC_BITS:
        return exp2_neg(d)
    ip, fp = d >> frac_bits, d & ((1 << frac_bits) - 1)
    v = shift_round(_exp2_table(frac_bits)[fp], np.minimum(ip, 62))
    return np.where(ip > 16, 0, v)


def attention_parts(q8, qs, k8, ks, v8, vs, mask, score_k, frac_bits=ops.SCORE_FRAC_BITS,
                    score_bits=ops.SCORE_BITS):
    """:func:`ops.attention` step by step, also returning the scores ``z`` (log2 units with
    ``frac_bits`` fraction bits) and the unnormalized weights ``e`` (Q1.15) and their sum.
    At the default widths its ``(acc, scale)`` equal :func:`ops.attention`'s (tested)."""
    dot = exact_matmul(q8, np.swapaxes(k8, -1, -2))
    c = scalar_mul(scalar_mul(Scalar(qs.m[..., :, None], qs.e[..., :, None]),
                              Scalar(ks.m[..., None, :], ks.e[..., None, :])), score_k)
    z = shift_round_saturate(dot * c.m, -(c.e + frac_bits), score_bits)
    lowest = -(1 << (score_bits - 1))
    z = np.where(mask, z, lowest)
    e = np.where(mask, exp2_neg_bits(z.max(axis=-1, keepdims=True) - z, frac_bits), 0)
    acc, scale = weighted_values(e, v8, vs, mask)
    return acc, scale, z, e


def weighted_values(e, v8, vs, mask):
    """Steps 3-4 of :func:`ops.attention`: P.V with 16-bit weights aligned to the largest
    value exponent, and the output scale ``2**(emax+16) / sum(e)``."""
    lowest = -(1 << 40)
    total = e.sum(axis=-1)
    vexp = np.where(mask, vs.e[..., None, :], lowest)
    emax = vexp.max(axis=-1, keepdims=True)
    w = np.where(mask, shift_round(e * vs.m[..., None, :], MANT_BITS + emax - vexp), 0)
    acc = exact_matmul(w, v8)
    return acc, scalar_shift(scalar_recip(scalar_from_int(total)), emax[..., 0] + MANT_BITS)


def rope_bits(x, cos, sin, extra=0):
    """:func:`ops.rope` keeping ``extra`` fraction bits (0: the op itself)."""
    if extra == 0:
        return ops.rope(x, cos, sin)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    k = ops.ROPE_FRAC_BITS - extra
    return np.concatenate([shift_round(a * cos - b * sin, k), shift_round(b * cos + a * sin, k)],
                          axis=-1)


def _matvec(model, name, xq):
    return exact_matmul(np.asarray(xq, np.int64), model.bitlinears[name].trits.T)


def _norm(im, name, x, xs, variant=DEFAULT):
    if variant.float_norm:
        g = im.model.floats[name + ".weight"].astype(np.float64)
        xq, s = quantize_activations(rms_norm(x * sf(xs), g, im.config.rms_norm_eps))
        return xq.astype(np.int64), scalar_from_float(1.0 / s.astype(np.float64))
    cn = im.norms[name]
    return ops.norm_quant(x, xs, cn.gain.astype(np.int64), cn.gain_exp, im.eps, cn.inv_n)


def integer_trace(im, ids, variant=DEFAULT):
    """:meth:`IntegerRunner.score`'s ops over ``ids`` (from an empty cache), keeping every
    intermediate in real units (float64). Returns ``(logits int64 (T, vocab) Q15.16, trace)``
    with the keys of :func:`float_trace`. With the default variant the logits are
    bit-identical to ``IntegerRunner(im).score(ids)`` (checked by :func:`run`)."""
    c, model = im.config, im.model
    ids = np.asarray(ids, np.int64)
    t = ids.size
    nh, nkv, hd, kv, mask, cos, sin, res_scale, q16 = _window_setup(im, t)
    if variant.float_embed:
        x = to_q16(model.floats[names.EMBED + ".weight"][ids])
    elif variant.embed_bits != 8:
        x = to_q16(_fake_quant(model.floats[names.EMBED + ".weight"].astype(np.float64),
                               variant.embed_bits)[ids])
    else:
        x = ops.embed(im.embed_q[ids], im.embed_scale[ids])
    tr = {"embed": x * q16, "layers": []}

    def heads(a, sc):   # (t, n, hd) ints with per-(t, n) Scalar -> (n, t, hd) real
        return (a * sf(sc)[..., None]).transpose(1, 0, 2)

    for i in range(c.num_hidden_layers):
        p = names.layer(i)
        rec = {"x_in": x * q16}
        xq, r = _norm(im, p + names.INPUT_NORM, x, res_scale, variant)
        rec["h_in"] = xq * sf(r)
        qa, ka, va = (_matvec(model, p + nm, xq) for nm in QKV)
        qs, ks, vs = (scalar_mul(r, im.linear_scale[p + nm]) for nm in QKV)
        rec.update(q=qa * sf(qs), k=ka * sf(ks), v=va * sf(vs))
        qr = rope_bits(qa.reshape(t, nh, hd), cos, sin, variant.rope_extra_bits)
        kr = rope_bits(ka.reshape(t, nkv, hd), cos, sin, variant.rope_extra_bits)
        if variant.rope_extra_bits:
            qs, ks = (scalar_shift(v, -variant.rope_extra_bits) for v in (qs, ks))
        rec["q_rot"] = (qr * sf(qs)[:, :, None]).transpose(1, 0, 2)
        rec["k_rot"] = (kr * sf(ks)[:, :, None]).transpose(1, 0, 2)
        if variant.float_attention:
            acc, sc = _float_attention(rec["q_rot"], rec["k_rot"],
                                       va.reshape(t, nkv, hd) * sf(vs)[:, :, None], kv, mask, rec)
        else:
            q8, q_sc = quant_heads_bits(qr, qs[:, 0], variant.qk_bits)
            k8, k_sc = quant_heads_bits(kr, ks[:, 0], variant.qk_bits)
            v8, v_sc = quant_heads_bits(va.reshape(t, nkv, hd), vs[:, 0], variant.v_bits)
            rec.update(q8=heads(q8, q_sc), k8=heads(k8, k_sc), v8=heads(v8, v_sc))
            kT, vT = k8.transpose(1, 0, 2), v8.transpose(1, 0, 2)
            kS, vS = Scalar(k_sc.m.T, k_sc.e.T), Scalar(v_sc.m.T, v_sc.e.T)
            acc, sc, z, e = attention_parts(q8.transpose(1, 0, 2), Scalar(q_sc.m.T, q_sc.e.T),
                                            kT[kv], kS[kv], vT[kv], vS[kv], mask, im.score_k,
                                            variant.frac_bits, variant.score_bits)
            rec["scores"] = np.where(mask, z / 2.0 ** variant.frac_bits, -np.inf)
            rec["probs"] = e / e.sum(-1, keepdims=True)
            acc, sc = acc.transpose(1, 0, 2), Scalar(sc.m.T, sc.e.T)
        attn, a_sc = ops.merge_heads(acc, sc)
        rec["attn"] = attn * sf(a_sc)
        xq, r = _norm(im, p + names.ATTN_SUB_NORM, attn, a_sc, variant)
        rec["h_sub"] = xq * sf(r)
        o, x = _residual_branch(im, p + names.O_PROJ, xq, r, x)
        rec.update(o=o * q16, x_mid=x * q16)
        xq, r = _norm(im, p + names.POST_ATTN_NORM, x, res_scale, variant)
        rec["h_post"] = xq * sf(r)
        ga, ua = (_matvec(model, p + nm, xq) for nm in GATE_UP)
        gs, us = (scalar_mul(r, im.linear_scale[p + nm]) for nm in GATE_UP)
        rec.update(g=ga * sf(gs), u=ua * sf(us))
        a, a_sc = ops.GLUS[c.hidden_act](ga, gs, ua, us)
        rec["a"] = a * sf(a_sc)
        xq, r = _norm(im, p + names.FFN_SUB_NORM, a, a_sc, variant)
        rec["h_ffn"] = xq * sf(r)
        d, x = _residual_branch(im, p + names.DOWN_PROJ, xq, r, x)
        rec.update(d=d * q16, x_out=x * q16)
        tr["layers"].append(rec)
    tr["x_final"] = x * q16
    xq, r = _norm(im, names.FINAL_NORM, x, res_scale, variant)
    tr["h_final"] = xq * sf(r)
    if variant.float_head:
        f = model.floats
        h = rms_norm(x * q16, f[names.FINAL_NORM + ".weight"].astype(np.float64), c.rms_norm_eps)
        head = f[(names.EMBED if c.tie_word_embeddings else names.LM_HEAD) + ".weight"]
        logits = to_q16(h @ head.T.astype(np.float64))
    elif variant.head_bits != 8:
        f = model.floats
        h = rms_norm(x * q16, f[names.FINAL_NORM + ".weight"].astype(np.float64), c.rms_norm_eps)
        head = f[(names.EMBED if c.tie_word_embeddings else names.LM_HEAD) + ".weight"]
        logits = to_q16(_fake_quant(h, variant.head_bits)
                        @ _fake_quant(head.astype(np.float64), variant.head_bits).T)
    else:
        logits = ops.lm_head(xq, r, im.head_q, im.head_scale)
    tr["logits"] = logits * 2.0 ** -ops.LOGIT_FRAC_BITS
    return logits, tr


def _float_attention(q, k, v, kv, mask, rec):
    """Attention in float64 from the integer path's (dequantized) q/k/v; the output goes
    back to integer rows (24 bits, one scale per (position, head)) for ``merge_heads``."""
    hd = q.shape[-1]
    s = np.einsum("hqd,hkd->hqk", q, k[kv]) / np.sqrt(hd) * LOG2E
    s = np.where(mask, s, -np.inf)
    rec["scores"] = s
    p = np.exp2(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    rec["probs"] = p
    ints, sc = to_ints(np.einsum("hqk,khd->qhd", p, v[:, kv]), 24)   # (t, nh, hd)
    return ints, Scalar(sc.m[..., 0], sc.e[..., 0])


# ---------------------------------------------------------------- same-input op errors

def same_input_errors(im, F):
    """``{(layer, op): per-position relative error (T,)}``: each integer op fed the float
    reference's input for it (see the module docstring for how inputs are converted)."""
    c, model = im.config, im.model
    t = F["embed"].shape[0]
    nh, nkv, hd, kv, mask, cos, sin, res_scale, q16 = _window_setup(im, t)
    out = {}

    def per_head(a, b):     # (h, t, x) -> (t,)
        return rel_err(a, b).mean(axis=0)

    def norm_op(name, x, xs, xq_ref, s_ref):
        xq, r = _norm(im, name, x, xs)
        return rel_err(xq * sf(r), xq_ref / s_ref), xq

    def bitlinear(name, xq_ref, s_ref, residual=False):
        acc = _matvec(model, name, xq_ref)
        sc = scalar_mul(scalar_from_float(1.0 / s_ref.astype(np.float64)), im.linear_scale[name])
        if residual:
            return ops.to_fixed(acc, sc, ops.RES_FRAC_BITS, ops.RES_BITS) * q16, acc, sc
        return acc * sf(sc), acc, sc

    out[("-", "embedding (int8 rows)")] = rel_err(
        ops.embed(im.embed_q[F["ids"]], im.embed_scale[F["ids"]]) * q16, F["embed"])
    for i, L in enumerate(F["layers"]):
        p = names.layer(i)
        out[(i, "input norm + int8 quant")], _ = norm_op(
            p + names.INPUT_NORM, to_q16(L["x_in"]), res_scale, L["in_xq"], L["in_s"])
        accs = {}
        for nm, key in zip(QKV, "qkv"):
            y, acc, sc = bitlinear(p + nm, L["in_xq"], L["in_s"])
            out[(i, f"{key}_proj (BitLinear + rescale)")] = rel_err(y, L[key])
            accs[key] = (acc, sc)
        for key, n in (("q", nh), ("k", nkv)):
            acc, sc = accs[key]
            rot = ops.rope(acc.reshape(t, n, hd), cos, sin) * sf(sc)[:, :, None]
            out[(i, f"RoPE {key}")] = per_head(rot.transpose(1, 0, 2), L[key + "_rot"])
        q8s = {}
        for key, src in (("q", "q_rot"), ("k", "k_rot"), ("v", "v_h")):
            fl = L[src]                                           # (n, t, hd)
            ints, xs = to_ints(fl.transpose(1, 0, 2).reshape(t, -1), 24)
            x8, sc = ops.quant_heads(ints.reshape(t, fl.shape[0], hd), xs[:, 0])
            q8s[key] = (x8.transpose(1, 0, 2), Scalar(sc.m.T, sc.e.T))
            out[(i, f"{key} per-head int8 (KV cache)")] = per_head(
                q8s[key][0] * sf(q8s[key][1])[..., None], fl)
        (q8, qs), (k8, ks), (v8, vs) = q8s["q"], q8s["k"], q8s["v"]
        acc, sc, z, e = attention_parts(q8, qs, k8[kv], ks[kv], v8[kv], vs[kv], mask, im.score_k)
        zf = np.where(mask, L["scores"], 0.0)
        out[(i, "scores (int8 q.k, Q.8 log2)")] = rel_err(np.where(mask, z / 256.0, 0), zf).mean(0)
        out[(i, "scores: abs error, log2 units (rms)")] = np.sqrt(
            (np.where(mask, z / 256.0 - zf, 0) ** 2).sum(-1) / mask.sum(-1)).mean(0)
        mean = zf.sum(-1, keepdims=True) / mask.sum(-1)[:, None]
        out[(i, "scores: float score std, log2 units")] = np.sqrt(
            (np.where(mask, zf - mean, 0) ** 2).sum(-1) / mask.sum(-1)).mean(0)
        top2 = np.sort(np.where(mask, zf, -np.inf), axis=-1)[..., -2:]
        out[(i, "scores: share of rows with float top-2 gap < 1 log2 unit")] = (
            (top2[..., 1] - top2[..., 0]) < 1).mean(0)
        # softmax alone: the float scores rounded to Q.8, the exp2 table, the sum
        zq = np.where(mask, ops.saturate(np.round(zf * 256).astype(np.int64), ops.SCORE_BITS),
                      -(1 << 23))
        e_sm = np.where(mask, exp2_neg(zq.max(-1, keepdims=True) - zq), 0)
        out[(i, "softmax (Q.8 scores, exp2 table)")] = rel_err(
            e_sm / e_sm.sum(-1, keepdims=True), L["probs"]).mean(0)
        # P.V alone: the float weights as Q1.15 (the largest at 1.0), int8 values
        pr = L["probs"].astype(np.float64)
        e_pv = np.round(pr / pr.max(-1, keepdims=True) * EXP2_ONE).astype(np.int64)
        a_pv, s_pv = weighted_values(e_pv, v8[kv], vs[kv], mask)
        attn_f = L["attn"].reshape(t, nh, hd).transpose(1, 0, 2)
        out[(i, "P.V (Q1.15 weights, int8 V)")] = per_head(a_pv * sf(s_pv)[..., None], attn_f)
        a_all, s_all = ops.attention(q8, qs, k8[kv], ks[kv], v8[kv], vs[kv], mask, im.score_k)
        out[(i, "attention output (all of the above)")] = per_head(
            a_all * sf(s_all)[..., None], attn_f)
        out[(i, "attn_sub_norm + int8 quant")], _ = norm_op(
            p + names.ATTN_SUB_NORM, *to_ints(L["attn"], 31), L["sub_xq"], L["sub_s"])
        y, _, _ = bitlinear(p + names.O_PROJ, L["sub_xq"], L["sub_s"], residual=True)
        out[(i, "o_proj (BitLinear + rescale to Q15.16)")] = rel_err(y, L["o"])
        out[(i, "residual add (Q15.16)")] = rel_err(
            ops.residual_add(to_q16(L["x_in"]), to_q16(L["o"])) * q16, L["x_mid"])
        out[(i, "post-attn norm + int8 quant")], _ = norm_op(
            p + names.POST_ATTN_NORM, to_q16(L["x_mid"]), res_scale, L["post_xq"], L["post_s"])
        (_, ga, gs), (_, ua, us) = (bitlinear(p + nm, L["post_xq"], L["post_s"]) for nm in GATE_UP)
        a, a_sc = ops.GLUS[c.hidden_act](ga, gs, ua, us)
        out[(i, f"{c.hidden_act} GLU")] = rel_err(a * sf(a_sc), L["a"])
        out[(i, "ffn_sub_norm + int8 quant")], _ = norm_op(
            p + names.FFN_SUB_NORM, *to_ints(L["a"], 31), L["ffn_xq"], L["ffn_s"])
        y, _, _ = bitlinear(p + names.DOWN_PROJ, L["ffn_xq"], L["ffn_s"], residual=True)
        out[(i, "down_proj (BitLinear + rescale to Q15.16)")] = rel_err(y, L["d"])
    xq, r = _norm(im, names.FINAL_NORM, to_q16(F["x_final"]), res_scale)
    out[("-", "final norm + int8 quant (reference: float)")] = rel_err(xq * sf(r), F["h_final"])
    ints, xs = to_ints(F["h_final"], 24)
    hq, hs = ops.quant_int8(ints)
    logits = ops.lm_head(hq, scalar_mul(hs, xs), im.head_q, im.head_scale)
    out[("-", "lm_head (int8 input and rows)")] = rel_err(logits * 2.0 ** -16, F["logits"])
    head = (im.head_q.astype(np.float64) * sf(im.head_scale)[:, None])
    out[("-", "lm_head (int8 rows only)")] = rel_err(F["h_final"] @ head.T, F["logits"])
    return out


COMPOUNDED = (("h_in", "input norm + int8 quant"), ("q", "q_proj"), ("k", "k_proj"),
              ("v", "v_proj"), ("q_rot", "RoPE q"), ("k_rot", "RoPE k"),
              ("scores", "scores"), ("probs", "softmax weights"), ("attn", "attention output"),
              ("h_sub", "attn_sub_norm + quant"), ("o", "o_proj"), ("x_mid", "residual (mid)"),
              ("h_post", "post-attn norm + quant"), ("g", "gate"), ("u", "up"),
              ("a", "GLU"), ("h_ffn", "ffn_sub_norm + quant"), ("d", "down_proj"),
              ("x_out", "residual (out)"))


def compounded_errors(F, I, act="relu2"):
    """``{(layer, op): per-position relative error (T,)}`` of the integer decode's own
    intermediates against the float ones (``act``: the model's ``hidden_act``, which names
    the GLU row)."""
    out = {("-", "embedding"): rel_err(I["embed"], F["embed"])}
    for i, (LF, LI) in enumerate(zip(F["layers"], I["layers"])):
        for key, label in COMPOUNDED:
            a, b = LI[key], LF[key]
            if key in ("scores",):
                m = np.isfinite(b)
                a, b = np.where(m, a, 0), np.where(m, b, 0)
            err = rel_err(a, b)
            label = f"{act} GLU" if label == "GLU" else label
            out[(i, label)] = err.mean(0) if err.ndim == 2 else err
    out[("-", "final norm")] = rel_err(I["h_final"], F["h_final"])
    out[("-", "logits")] = rel_err(I["logits"], F["logits"])
    return out


# ---------------------------------------------------------------- driving it over windows

@dataclass
class Budget:
    """Per-op errors by position bucket, and the top-1 figures."""

    positions: int = 0
    same: dict = field(default_factory=dict)        # (layer, op) -> list of per-position arrays
    compounded: dict = field(default_factory=dict)
    pos: list = field(default_factory=list)          # position of each entry
    agree: list = field(default_factory=list)        # bool per position
    margin: list = field(default_factory=list)       # float top-2 margin per position
    corr: list = field(default_factory=list)         # logit correlation per position
    peaks: dict = field(default_factory=dict)        # largest magnitudes seen (real units)

    def peak(self, key, value):
        self.peaks[key] = max(self.peaks.get(key, 0.0), float(value))

    def add(self, pos, same, comp, fl, il):
        self.positions += pos.size
        self.pos.append(pos)
        for dst, src in ((self.same, same), (self.compounded, comp)):
            for k, v in src.items():
                dst.setdefault(k, []).append(v)
        self.agree.append(fl.argmax(1) == il.argmax(1))
        top2 = np.sort(fl, axis=1)[:, -2:]
        self.margin.append(top2[:, 1] - top2[:, 0])
        fc, ic = fl - fl.mean(1, keepdims=True), il - il.mean(1, keepdims=True)
        self.corr.append((fc * ic).sum(1) / np.sqrt((fc ** 2).sum(1) * (ic ** 2).sum(1)))

    def buckets(self):
        pos = np.concatenate(self.pos)
        out = []
        for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:]):
            sel = (pos >= lo) & (pos < hi)
            if sel.any():
                out.append((f"{lo}" if hi == lo + 1 else f"{lo}-{min(hi, pos.max() + 1) - 1}", sel))
        return out

    def summary(self):
        """A JSON-able dict: per op, the mean error in each position bucket."""
        bk = self.buckets()
        agree, margin = np.concatenate(self.agree), np.concatenate(self.margin)
        corr = np.concatenate(self.corr)

        def table(d):
            return [{"layer": k[0], "op": k[1],
                     **{b: float(np.mean(np.concatenate(v)[sel])) for b, sel in bk}}
                    for k, v in d.items()]
        return {"positions": self.positions, "buckets": [b for b, _ in bk],
                "top1_agreement": float(agree.mean()),
                "top1_by_bucket": {b: float(agree[sel].mean()) for b, sel in bk},
                "logit_corr_by_bucket": {b: float(corr[sel].mean()) for b, sel in bk},
                "disagreements_at_margin_ge_2": int(((~agree) & (margin >= 2)).sum()),
                "peaks": self.peaks, "same_input": table(self.same), "compounded": table(self.compounded)}


def _residual_branch(im, name, xq, r, x):
    """A BitLinear (``name``) of the int8 ``xq`` with row scale ``r`` into the residual
    format, added to ``x``: ``(branch, new x)``, as the integer runner does it."""
    out = ops.to_fixed(_matvec(im.model, name, xq), scalar_mul(r, im.linear_scale[name]),
                       ops.RES_FRAC_BITS, ops.RES_BITS)
    return out, ops.residual_add(x, out)


def _window_setup(im, t):
    """What both traces of a ``t``-position window start from: head counts, each query
    head's KV head, the causal mask, the RoPE tables at the window's positions, the
    residual stream's scale."""
    c = im.config
    nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    kv = np.arange(nh) // (nh // nkv)
    pos = np.arange(t)
    mask = pos[None, :] <= pos[:, None]
    cos = im.rope_cos[pos][:, None, :].astype(np.int64)
    sin = im.rope_sin[pos][:, None, :].astype(np.int64)
    res_scale = scalar_from_int(np.ones((t, 1), np.int64), -ops.RES_FRAC_BITS)
    return nh, nkv, hd, kv, mask, cos, sin, res_scale, 2.0 ** -ops.RES_FRAC_BITS


def windows(ids, context, limit=None):
    from ..corpus import consecutive_windows  # the same windows as `ternary eval`
    spans = consecutive_windows(len(ids), context)
    return [np.asarray(ids[s:e], np.int64) for s, e in spans[:limit]]


def run(model, ids, n_windows=None, check=True):
    """Measure the error budget over the eval windows of ``ids``; return a :class:`Budget`.
    With ``check`` the traces are first checked against the runners they re-trace."""
    im = compile_model(model)
    budget = Budget()
    for j, w in enumerate(windows(ids, model.config.max_position_embeddings, n_windows)):
        fl, F = float_trace(model, w)
        il, I = integer_trace(im, w)
        if check and j == 0:
            check_traces(model, im, w, fl, il)
        for L in I["layers"]:
            budget.peak("residual (real; Q15.16 rail 32768)",
                        max(np.abs(L["x_mid"]).max(), np.abs(L["x_out"]).max()))
            sc = L["scores"][np.isfinite(L["scores"])]
            budget.peak("|score| (log2 units; int24 Q.8 rail 32768)", np.abs(sc).max())
        budget.peak("|logit| (Q15.16 rail 32768)", np.abs(I["logits"]).max())
        budget.add(np.arange(w.size), same_input_errors(im, F),
                   compounded_errors(F, I, model.config.hidden_act),
                   fl.astype(np.float64), il.astype(np.float64))
    return budget


def check_traces(model, im, ids, fl, il):
    """The traced passes are the runners' passes: integer logits bit-identical, float
    logits equal to float32 rounding."""
    ref = IntegerRunner(im, max_len=ids.size).score(ids)[0]
    if not np.array_equal(il, ref):
        raise AssertionError("integer trace differs from IntegerRunner.score")
    fref = BitNetRunner(model, max_len=ids.size).score(ids)
    scale = float(np.abs(fref).max()) or 1.0
    if np.abs(fl - fref).max() > 1e-4 * scale:
        raise AssertionError("float trace differs from BitNetRunner.score")


# ---------------------------------------------------------------- attribution experiments

def agreement(model, ids, variant=None, fake=None, n_windows=None, nudge=0.0, seed=0):
    """Top-1 agreement with the float reference over the eval windows of ``ids`` of: the
    integer decode with ``variant``, or (``fake``/``nudge``) the float reference with one
    integer rounding added or its embeddings nudged by a relative ``nudge``."""
    im = compile_model(model) if variant is not None else None
    other = model
    if nudge:
        other = copy.copy(model)
        other.floats = dict(model.floats)
        e = model.floats[names.EMBED + ".weight"]
        rng = np.random.default_rng(seed)
        other.floats[names.EMBED + ".weight"] = (
            e * (1 + nudge * rng.standard_normal(e.shape))).astype(np.float32)
    agree = n = 0
    for w in windows(ids, model.config.max_position_embeddings, n_windows):
        ref = float_trace(model, w)[0]
        if variant is not None:
            got = integer_trace(im, w, variant)[0]
        else:
            got = float_trace(other, w, fake)[0]
        agree += int((ref.argmax(1) == got.argmax(1)).sum())
        n += w.size
    return agree / n


EXPERIMENTS = {
    "integer decode (as specified)": {"variant": DEFAULT},
    "integer, q/k int16": {"variant": Variant(qk_bits=16)},
    "integer, q/k/v int16": {"variant": Variant(qk_bits=16, v_bits=16)},
    "integer, q/k int12": {"variant": Variant(qk_bits=12)},
    "integer, v int16": {"variant": Variant(v_bits=16)},
    "integer, exp2 table 4096 (Q.12 scores)": {"variant": Variant(frac_bits=12)},
    "integer, attention in float64": {"variant": Variant(float_attention=True)},
    "integer, float embedding + lm_head": {"variant": Variant(float_embed=True, float_head=True)},
    "integer, embedding int16": {"variant": Variant(embed_bits=16)},
    "integer, lm_head + its input int16": {"variant": Variant(head_bits=16)},
    "integer, embedding + q/k/v int16": {"variant": Variant(embed_bits=16, qk_bits=16, v_bits=16)},
    "integer, embedding + q/k/v + lm_head int16": {
        "variant": Variant(embed_bits=16, qk_bits=16, v_bits=16, head_bits=16)},
    "integer, float norm codes": {"variant": Variant(float_norm=True)},
    "integer, RoPE +6 fraction bits": {"variant": Variant(rope_extra_bits=6)},
    "integer, embedding + q/k/v int16, RoPE +6 bits": {
        "variant": Variant(embed_bits=16, qk_bits=16, v_bits=16, rope_extra_bits=6)},
    "integer, embedding + q/k/v int16, RoPE +6 bits, float norm codes": {
        "variant": Variant(embed_bits=16, qk_bits=16, v_bits=16, rope_extra_bits=6,
                           float_norm=True)},
    "integer, embedding + q/k/v int16 + float norm codes": {
        "variant": Variant(embed_bits=16, qk_bits=16, v_bits=16, float_norm=True)},
    "integer, all of the above + exp2 4096": {
        "variant": Variant(embed_bits=16, qk_bits=16, v_bits=16, head_bits=16, frac_bits=12,
                           rope_extra_bits=6, float_norm=True)},
    "float + q/k/v int8 per head": {"fake": FloatFake(qkv_bits=8)},
    "float + q/k/v int16 per head": {"fake": FloatFake(qkv_bits=16)},
    "float + softmax via Q.8 + exp2 table": {"fake": FloatFake(exp2=True)},
    "float + int8 embedding rows": {"fake": FloatFake(embed8=True)},
    "float + int8 lm_head rows + int8 input": {"fake": FloatFake(head8=True, head_in8=True)},
    "float, embeddings nudged 1e-5": {"nudge": 1e-5},
    "float, embeddings nudged 1e-3": {"nudge": 1e-3},
}


def experiments(model, ids, n_windows=None, only=None):
    """``{name: top-1 agreement}`` for :data:`EXPERIMENTS` (or the names in ``only``)."""
    return {k: agreement(model, ids, n_windows=n_windows, **kw)
            for k, kw in EXPERIMENTS.items() if only is None or k in only}


# ---------------------------------------------------------------- command line

def markdown(summary, which):
    b = summary["buckets"]
    lines = [f"| layer | op | " + " | ".join(f"pos {x}" for x in b) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in b) + " |"]
    for row in summary[which]:
        lines.append(f"| {row['layer']} | {row['op']} | "
                     + " | ".join(f"{row[x]:.2e}" for x in b) + " |")
    return "\n".join(lines)


def main(argv=None):
    from ..model.file import load_model
    from ..model.tokenizer import read_token_ids as read_ids
    ap = argparse.ArgumentParser(prog="python -m ternary_core.integer.error_budget",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="file of token ids (as `ternary eval --ids`)")
    ap.add_argument("--windows", type=int, default=None, help="score only the first N windows")
    ap.add_argument("--experiments", action="store_true", help="also run the attribution runs")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        model = load_model(a.model)
        ids = read_ids(a.ids)
        if len(ids) < 2:
            raise TernaryError(f"--ids: need at least 2 token ids, got {len(ids)}")
        if max(ids) >= model.config.vocab_size or min(ids) < 0:
            raise TernaryError(f"--ids: token ids must be in 0..{model.config.vocab_size - 1}")
        if a.windows is not None and a.windows < 1:
            raise TernaryError(f"--windows must be a positive integer, got {a.windows}")
    except (TernaryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = run(model, ids, a.windows).summary()
    if a.experiments:
        s["experiments"] = experiments(model, ids, a.windows)
    if a.json:
        print(json.dumps(s, indent=1))
        return 0
    print(f"positions {s['positions']}, top-1 agreement {s['top1_agreement']:.4f}, "
          f"disagreements at float margin >= 2: {s['disagreements_at_margin_ge_2']}")
    print("top-1 by bucket:", {k: round(v, 4) for k, v in s["top1_by_bucket"].items()})
    print("logit corr by bucket:", {k: round(v, 4) for k, v in s["logit_corr_by_bucket"].items()})
    print("peaks:", {k: round(v, 2) for k, v in s["peaks"].items()})
    print("\nsame input (mean relative L2 error of the op's output):\n")
    print(markdown(s, "same_input"))
    print("\ncompounded (the integer decode's own intermediate):\n")
    print(markdown(s, "compounded"))
    for k, v in s.get("experiments", {}).items():
        print(f"{k:45s} {v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
