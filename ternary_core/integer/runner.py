"""The integer decode step: the golden model of the device's whole-model offload.

:class:`IntegerRunner` has the interface of :class:`ternary_core.reference.BitNetRunner`
(``reset``, ``pos``, ``step``) but computes in integers only, from the constants of
:func:`~.compile.compile_model`; every ternary matvec goes to a
:class:`~ternary_core.backend.MatvecBackend` (the golden model by default, the device
or ``--check`` otherwise). ``step`` returns int64 logits in Q15.16; ``score`` runs a whole
window at once (causal attention as a masked matrix) and gives the same integers, because
every op is exact integer arithmetic whose result does not depend on evaluation order.
"""

import numpy as np

from ..errors import TernaryError
from ..backend import GoldenBackend
from ..model import names
from ..model.names import GATE_UP, QKV
from . import ops
from .fixed import Scalar, exact_matmul, scalar_from_int, scalar_mul

LOGIT_SCALE = 2.0 ** -ops.LOGIT_FRAC_BITS


class IntegerRunner:
    """Runs an :class:`~.compile.IntegerModel` token by token (``step``) or a window at
    once (``score``); ``backend.prepare(im.model)`` is called here."""

    def __init__(self, im, backend=None, max_len=None):
        self.im, self.cfg = im, im.config
        self.backend = backend if backend is not None else GoldenBackend()
        self.backend.prepare(im.model)
        self.max_len = int(max_len or im.max_len)
        if not 1 <= self.max_len <= im.max_len:
            raise TernaryError(f"max_len must be 1..{im.max_len} (the compiled RoPE table), "
                               f"got {self.max_len}")
        self.last_logit_scale = LOGIT_SCALE
        self.residual_peak = 0      # largest |residual| (Q15.16) since creation, for measuring
        self._trits_t = None
        self.reset()

    def reset(self):
        c = self.cfg
        shape = (c.num_hidden_layers, c.num_key_value_heads, self.max_len)
        self.k8 = np.zeros(shape + (c.head_dim,), np.int8)
        self.v8 = np.zeros(shape + (c.head_dim,), np.int8)
        self.k_scale = Scalar(np.zeros(shape, np.int64), np.zeros(shape, np.int64))
        self.v_scale = Scalar(np.zeros(shape, np.int64), np.zeros(shape, np.int64))
        self.pos = 0

    def step(self, token):
        """Feed one token id; return int64 logits (vocab,) in Q15.16."""
        return self._forward(self._check_ids([token]))[0]

    def score(self, ids):
        """From a reset state, feed ``ids`` at once; return ``(logits (T, vocab) int64,
        scales (T,) float64)`` with ``logits[i] * scales[i]`` ~ the float logits after
        ``ids[:i+1]``. Bit-identical to stepping; leaves the runner at position ``T``."""
        self.reset()
        ids = self._check_ids(ids)
        logits = self._forward(ids)
        return logits, np.full(len(ids), LOGIT_SCALE)

    def _check_ids(self, ids):
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise TernaryError("token ids: expected a non-empty 1-D sequence of integers")
        vocab = self.cfg.vocab_size
        bad = ids[(ids < 0) | (ids >= vocab)]
        if bad.size:
            raise TernaryError(f"token id {int(bad[0])} is outside the vocabulary (0..{vocab - 1})")
        if self.pos + ids.size > self.max_len:
            raise TernaryError(f"context full: the model takes at most {self.max_len} tokens")
        return ids.astype(np.int64)

    def _matvecs(self, names, xq):
        """``acc = W~ . x_q`` for each name and each row of ``xq`` (T, K)."""
        if type(self.backend) is GoldenBackend and xq.shape[0] > 1:
            # the golden backend's own trits, all rows at once (same integers as row by row)
            if self._trits_t is None:
                self._trits_t = {n: np.ascontiguousarray(w.T)
                                 for n, w in self.backend.trits.items()}
            return [exact_matmul(xq, self._trits_t[n]) for n in names]
        rows = [self.backend.run(names, row) for row in xq]
        return [np.stack([np.asarray(r[j], np.int64) for r in rows]) for j in range(len(names))]

    def _norm(self, name, x, xs):
        c = self.im.norms[name]
        return ops.norm_quant(x, xs, c.gain.astype(np.int64), c.gain_exp, self.im.eps, c.inv_n)

    def _forward(self, ids):
        im, c = self.im, self.cfg
        t = ids.size
        p0 = self.pos
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        group = nh // nkv
        glu = ops.GLUS[c.hidden_act]
        pos = np.arange(p0, p0 + t)
        end = p0 + t
        mask = np.arange(end)[None, :] <= pos[:, None]              # (t, end)
        cos = im.rope_cos[pos][:, None, :].astype(np.int64)
        sin = im.rope_sin[pos][:, None, :].astype(np.int64)
        res_scale = scalar_from_int(np.ones((t, 1), np.int64), -ops.RES_FRAC_BITS)
        x = ops.embed(im.embed_q[ids], im.embed_scale[ids])
        self.residual_peak = max(self.residual_peak, int(np.abs(x).max()))
        for i in range(c.num_hidden_layers):
            p = names.layer(i)
            xq, r = self._norm(p + names.INPUT_NORM, x, res_scale)
            qa, ka, va = self._matvecs([p + n for n in QKV], xq)
            qs, ks, vs = (scalar_mul(r, im.linear_scale[p + n]) for n in QKV)
            q8, q_sc = ops.quant_heads(ops.rope(qa.reshape(t, nh, hd), cos, sin), qs[:, 0])
            k8, k_sc = ops.quant_heads(ops.rope(ka.reshape(t, nkv, hd), cos, sin), ks[:, 0])
            v8, v_sc = ops.quant_heads(va.reshape(t, nkv, hd), vs[:, 0])
            self.k8[i, :, p0:end] = k8.transpose(1, 0, 2)
            self.v8[i, :, p0:end] = v8.transpose(1, 0, 2)
            for cache, sc in ((self.k_scale, k_sc), (self.v_scale, v_sc)):
                cache.m[i, :, p0:end], cache.e[i, :, p0:end] = sc.m.T, sc.e.T
            # heads on the leading axis; query head h reads kv head h // group (GQA)
            kv = np.arange(nh) // group
            acc, sc = ops.attention(q8.transpose(1, 0, 2), Scalar(q_sc.m.T, q_sc.e.T),
                                    self.k8[i, kv, :end], self.k_scale[i, kv, :end],
                                    self.v8[i, kv, :end], self.v_scale[i, kv, :end], mask,
                                    im.score_k)
            attn, a_sc = ops.merge_heads(acc.transpose(1, 0, 2), Scalar(sc.m.T, sc.e.T))
            xq, r = self._norm(p + names.ATTN_SUB_NORM, attn, a_sc)
            (oa,) = self._matvecs([p + names.O_PROJ], xq)
            o = ops.to_fixed(oa, scalar_mul(r, im.linear_scale[p + names.O_PROJ]),
                             ops.RES_FRAC_BITS, ops.RES_BITS)
            x = ops.residual_add(x, o)
            self.residual_peak = max(self.residual_peak, int(np.abs(x).max()))
            xq, r = self._norm(p + names.POST_ATTN_NORM, x, res_scale)
            ga, ua = self._matvecs([p + n for n in GATE_UP], xq)
            gs, us = (scalar_mul(r, im.linear_scale[p + n]) for n in GATE_UP)
            a, a_sc = glu(ga, gs, ua, us)
            xq, r = self._norm(p + names.FFN_SUB_NORM, a, a_sc)
            (da,) = self._matvecs([p + names.DOWN_PROJ], xq)
            d = ops.to_fixed(da, scalar_mul(r, im.linear_scale[p + names.DOWN_PROJ]),
                             ops.RES_FRAC_BITS, ops.RES_BITS)
            x = ops.residual_add(x, d)
            self.residual_peak = max(self.residual_peak, int(np.abs(x).max()))
        xq, r = self._norm(names.FINAL_NORM, x, res_scale)
        self.pos = end
        return ops.lm_head(xq, r, im.head_q, im.head_scale)
