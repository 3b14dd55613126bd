"""Load-time compilation of a float BitNet model into the integer decode's constants.

This is the only place float arithmetic is allowed: it runs once per model, on the host,
and produces integer tables and scalars (what a device would be sent):

- embeddings and lm_head as int8 rows with one scale (scalar) per row (absmax / 127);
- each norm's gain as int16 with one power-of-two exponent per norm;
- each BitLinear's weight scale as the scalar ``1 / weight_scale`` (the engine's trits
  are used unchanged);
- RoPE cos/sin as int16 Q1.14 per (position, frequency);
- the scalars ``eps``, ``1/n`` per norm width, and ``log2(e)/sqrt(head_dim)``.
"""

from dataclasses import dataclass, field

import numpy as np

from ..errors import TernaryError
from ..model import names
from .fixed import Scalar, scalar_from_float
from .ops import ROPE_FRAC_BITS



@dataclass
class NormConstants:
    gain: np.ndarray    # int16 (n,)
    gain_exp: int       # g ~ gain * 2**gain_exp
    inv_n: Scalar       # 1/n


@dataclass
class IntegerModel:
    """A model compiled for the integer decode (see docs/integer-decode.md)."""

    model: object                   # the original BitNetModel (its trits go to the backend)
    config: object
    max_len: int
    embed_q: np.ndarray             # int8 (vocab, d)
    embed_scale: Scalar             # (vocab,)
    head_q: np.ndarray              # int8 (vocab, d)
    head_scale: Scalar              # (vocab,)
    norms: dict = field(default_factory=dict)          # full norm name -> NormConstants
    linear_scale: dict = field(default_factory=dict)   # BitLinear name -> Scalar 1/weight_scale
    rope_cos: np.ndarray = None     # int16 (max_len, head_dim/2), Q1.14
    rope_sin: np.ndarray = None
    eps: Scalar = None
    score_k: Scalar = None          # log2(e) / sqrt(head_dim)

    def table_bytes(self):
        """Bytes of the constants a device stores besides the ternary weights."""
        n = self.embed_q.size + self.embed_scale.m.size * 3
        if not self.config.tie_word_embeddings:
            n += self.head_q.size + self.head_scale.m.size * 3
        n += sum(c.gain.size * 2 for c in self.norms.values())
        n += self.rope_cos.size * 2 + self.rope_sin.size * 2
        return n


def int8_rows(w):
    """Per-row absmax int8 (round half to even) and the row scales (absmax/127)."""
    w = np.asarray(w, np.float64)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 0.0)
    q = np.round(w / np.where(scale > 0, scale, 1.0)[:, None])
    return np.clip(q, -127, 127).astype(np.int8), scalar_from_float(scale)


def int16_gain(g):
    """A norm gain as int16 with one exponent: the largest |gain| lies in [2**14, 2**15]
    before rounding, and the rounded values never leave int16 (no wrap to -32768)."""
    g = np.asarray(g, np.float64)
    amax = np.abs(g).max()
    if amax == 0:
        return np.zeros(g.shape, np.int16), 0
    exp = int(np.floor(np.log2(amax))) - 14
    q = np.round(np.ldexp(g, -exp))
    if np.abs(q).max() > 32767:  # amax in the top half step below a power of two rounds up to 2**15
        exp += 1
        q = np.round(np.ldexp(g, -exp))
    return q.astype(np.int16), exp


def rope_table(config, max_len):
    hd = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.arange(max_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    one = 1 << ROPE_FRAC_BITS
    return (np.round(np.cos(ang) * one).astype(np.int16),
            np.round(np.sin(ang) * one).astype(np.int16))


def compile_model(model, max_len=None):
    """Compile a :class:`~ternary_core.model.file.BitNetModel` for the integer decode.

    ``max_len`` bounds the positions (RoPE table rows); default the model's context.
    """
    cfg = model.config
    max_len = int(max_len or cfg.max_position_embeddings)
    if max_len < 1:
        raise TernaryError(f"max_len must be a positive integer, got {max_len}")
    f = model.floats
    embed_q, embed_scale = int8_rows(f[names.EMBED + ".weight"])
    if cfg.tie_word_embeddings:
        head_q, head_scale = embed_q, embed_scale
    else:
        head_q, head_scale = int8_rows(f[names.LM_HEAD + ".weight"])
    norms = {}
    for name in names.norm_names(cfg.num_hidden_layers):
        g = f[name + ".weight"]
        gain, exp = int16_gain(g)
        norms[name] = NormConstants(gain, exp, scalar_from_float(1.0 / g.size))
    linear_scale = {}
    for name in cfg.bitlinear_shapes():
        linear_scale[name] = scalar_from_float(1.0 / float(model.bitlinears[name].weight_scale))
    cos, sin = rope_table(cfg, max_len)
    return IntegerModel(
        model=model, config=cfg, max_len=max_len, embed_q=embed_q, embed_scale=embed_scale,
        head_q=head_q, head_scale=head_scale, norms=norms, linear_scale=linear_scale,
        rope_cos=cos, rope_sin=sin, eps=scalar_from_float(float(cfg.rms_norm_eps)),
        score_k=scalar_from_float(np.log2(np.e) / np.sqrt(cfg.head_dim)))
