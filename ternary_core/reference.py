"""Numpy inference of HF transformers' ``BitNetForCausalLM``, one token at a time with
a KV cache. Float32 throughout, like the reference on CPU.

Every BitLinear goes through a :class:`~ternary_core.backend.MatvecBackend`: the host quantizes the input
(per-token absmax int8, exactly as HF does), the backend computes the integer
``acc = W~ . x_q``, and the host applies ``acc / (input_scale * weight_scale)``. The
default backend is the golden integer model; the device backend (host/) sends the
same integer work to the engine. Layers that share an input (q/k/v, gate/up) are
handed to the backend together, so a device loads that input once.
"""

import numpy as np

from .backend import GoldenBackend
from .model import names
from .quant import dequantize_output, quantize_activations


def rms_norm(x, weight, eps):
    x = x.astype(np.float32)
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return weight * (x * (np.float32(1.0) / np.sqrt(var + np.float32(eps))))


def silu(x):
    """``x * sigmoid(x)`` in float32, as torch's ``F.silu`` (``x / (1 + exp(-x))``); a very
    negative ``x`` overflows ``exp`` to inf and gives -0, the limit, without a warning."""
    x = x.astype(np.float32)
    with np.errstate(over="ignore"):
        return x / (np.float32(1.0) + np.exp(-x))


def glu(act, g, u):
    """The MLP's gated product ``act(g) * u`` for ``hidden_act`` ``act`` (HF's
    ``BitNetMLP``: ``act_fn(gate_proj(x)) * up_proj(x)``)."""
    if act == "relu2":
        return np.square(np.maximum(g, 0)) * u
    if act == "silu":
        return silu(g) * u
    raise ValueError(f"hidden_act {act!r} has no GLU here")


def rope_tables(config, max_pos):
    hd = config.head_dim
    inv_freq = (np.float32(1.0) / (np.float32(config.rope_theta) **
                                   (np.arange(0, hd, 2, dtype=np.float32) / np.float32(hd)))).astype(np.float32)
    freqs = np.arange(max_pos, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class BitNetRunner:
    """Runs a :class:`~ternary_core.model.file.BitNetModel` token by token."""

    def __init__(self, model, backend=None, max_len=None):
        self.model, self.cfg = model, model.config
        self.backend = backend or GoldenBackend()
        self.backend.prepare(model)
        self.max_len = max_len or self.cfg.max_position_embeddings
        self.cos, self.sin = rope_tables(self.cfg, self.max_len)
        self.reset()

    def reset(self):
        c = self.cfg
        shape = (c.num_hidden_layers, c.num_key_value_heads, self.max_len, c.head_dim)
        self.k_cache = np.zeros(shape, np.float32)
        self.v_cache = np.zeros(shape, np.float32)
        self.pos = 0

    def _bitlinear(self, names, x):
        x_q, scale = quantize_activations(x)
        accs = self.backend.run(names, x_q)
        return [dequantize_output(acc, scale[0], self.model.bitlinears[n].weight_scale)
                for n, acc in zip(names, accs)]

    def _forward(self, x, bitlinear, attend):
        """The decoder layers and the final norm over hidden states ``x`` ((d,) for one
        token, (T, d) for a window): ``bitlinear(names, h)`` runs BitLinears that share
        the input ``h``; ``attend(layer, q, k, v)`` turns the projections into the
        merged heads (RoPE, the KV cache or the causal mask, softmax). :meth:`step` and
        :meth:`score` differ only in those two (the op order of each is held by the
        transformers equivalence test)."""
        c, f = self.cfg, self.model.floats
        eps = c.rms_norm_eps
        for i in range(c.num_hidden_layers):
            p = names.layer(i)
            qkv, o_proj, gate_up, down = names.layer_stacks(i)
            h = rms_norm(x, f[p + names.INPUT_NORM + ".weight"], eps)
            q, k, v = bitlinear(list(qkv), h)
            attn = attend(i, q, k, v)
            attn = rms_norm(attn, f[p + names.ATTN_SUB_NORM + ".weight"], eps)
            (o,) = bitlinear(list(o_proj), attn)
            x = x + o
            h = rms_norm(x, f[p + names.POST_ATTN_NORM + ".weight"], eps)
            g, u = bitlinear(list(gate_up), h)
            a = glu(c.hidden_act, g, u)
            a = rms_norm(a, f[p + names.FFN_SUB_NORM + ".weight"], eps)
            (d,) = bitlinear(list(down), a)
            x = x + d
        return rms_norm(x, f[names.FINAL_NORM + ".weight"], eps)

    def _head(self):
        f = self.model.floats
        return f[(names.EMBED if self.cfg.tie_word_embeddings else names.LM_HEAD) + ".weight"]

    def step(self, token):
        """Feed one token id; return the float32 logits for the next token."""
        c, f = self.cfg, self.model.floats
        if self.pos >= self.max_len:
            raise ValueError(f"context full: the model takes at most {self.max_len} tokens")
        if not 0 <= token < c.vocab_size:
            raise ValueError(f"token id {token} is outside the vocabulary (0..{c.vocab_size - 1})")
        nh, nkv, hd, t = c.num_attention_heads, c.num_key_value_heads, c.head_dim, self.pos
        cos, sin = self.cos[t], self.sin[t]

        def attend(i, q, k, v):
            q, k, v = q.reshape(nh, hd), k.reshape(nkv, hd), v.reshape(nkv, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            self.k_cache[i, :, t], self.v_cache[i, :, t] = k, v
            keys = np.repeat(self.k_cache[i, :, :t + 1], nh // nkv, axis=0)    # (nh, t+1, hd)
            vals = np.repeat(self.v_cache[i, :, :t + 1], nh // nkv, axis=0)
            scores = np.einsum("hd,htd->ht", q, keys) * np.float32(hd ** -0.5)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = (scores / scores.sum(axis=-1, keepdims=True)).astype(np.float32)
            return np.einsum("ht,htd->hd", probs, vals).reshape(nh * hd)

        x = f[names.EMBED + ".weight"][token].astype(np.float32)
        x = self._forward(x, self._bitlinear, attend)
        self.pos += 1
        return self._head() @ x

    def _bitlinear_rows(self, names, x):
        """:meth:`_bitlinear` for a (T, K) block of tokens, each quantized on its own.

        The integer matvecs are done here as one float matmul of integer values, which
        is exact (every partial sum is an integer below 2**24 for K <= 131072, checked)
        and so equals the golden model; they do not go through the backend."""
        x_q, scale = quantize_activations(x)
        xf = x_q.astype(np.float32)
        out = []
        for n in names:
            b = self.model.bitlinears[n]
            if n not in self._trits_t:
                if b.trits.shape[1] * 128 >= 1 << 24:
                    raise ValueError(f"layer {n}: K={b.trits.shape[1]} is too wide for the "
                                     "float32 window scorer")
                self._trits_t[n] = np.ascontiguousarray(b.trits.T, dtype=np.float32)
            out.append(dequantize_output(xf @ self._trits_t[n], scale, b.weight_scale))
        return out

    def score(self, ids):
        """Logits after every token of ``ids`` fed from an empty context, all at once.

        Returns float32 ``(len(ids), vocab)``: row ``t`` is what :meth:`step` returns
        after feeding ``ids[:t+1]`` from :meth:`reset`, equal to it within float32
        rounding (sums are taken in another order). Causal attention over the window
        is one masked matrix product per layer. Leaves the runner's state alone.
        ``len(ids)`` is at most ``max_len``.
        """
        c, f = self.cfg, self.model.floats
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = ids.size
        if not 1 <= n <= self.max_len:
            raise ValueError(f"score takes 1..{self.max_len} tokens, got {n}")
        if ids.min() < 0 or ids.max() >= c.vocab_size:
            raise ValueError(f"token ids must be in 0..{c.vocab_size - 1}")
        if not hasattr(self, "_trits_t"):
            self._trits_t = {}
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        cos, sin = self.cos[:n], self.sin[:n]                              # (T, hd)
        causal = np.triu(np.ones((n, n), dtype=bool), 1)

        def attend(i, q, k, v):
            q = q.reshape(n, nh, hd).transpose(1, 0, 2)                      # (nh, T, hd)
            k = k.reshape(n, nkv, hd).transpose(1, 0, 2)
            v = v.reshape(n, nkv, hd).transpose(1, 0, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            keys, vals = np.repeat(k, nh // nkv, axis=0), np.repeat(v, nh // nkv, axis=0)
            scores = np.einsum("hqd,hkd->hqk", q, keys) * np.float32(hd ** -0.5)
            scores[:, causal] = -np.inf
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = (scores / scores.sum(axis=-1, keepdims=True)).astype(np.float32)
            return np.einsum("hqk,hkd->hqd", probs, vals).transpose(1, 0, 2).reshape(n, nh * hd)

        x = f[names.EMBED + ".weight"][ids].astype(np.float32)             # (T, d)
        x = self._forward(x, self._bitlinear_rows, attend)
        return x @ self._head().T
