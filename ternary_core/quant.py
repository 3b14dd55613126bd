"""BitNet b1.58 quantizers, exactly as HF transformers' BitNet computes them.

Weights (``WeightQuant`` in ``transformers.integrations.bitnet``)::

    weight_scale = 1 / max(mean(|W|), 1e-5)          # float32
    W~ = clip(round(W * weight_scale), -1, 1)          # round half to even

Activations (``BitLinear.activation_quant``), per token (last axis)::

    input_scale = 127 / max(max(|x|), 1e-5)           # float32
    x_q = clip(round(x * input_scale), -128, 127)

A BitLinear then computes ``y = (x_q . W~^T) / (input_scale * weight_scale)``; the
integer part is the engine's job, :func:`dequantize_output` is the host's.
All arithmetic is float32, like the reference; numpy and torch both round half to even.
The activation path is bit-exact with torch. The weight path's ``mean`` is taken in
float64 and rounded, which can differ from torch's float32 sum in the last place
(torch sums in its own order); it runs once, offline, and the stored trits and scale
are what inference uses.
"""

import numpy as np

from .errors import TernaryError

WEIGHT_EPS = np.float32(1e-5)
ACT_EPS = np.float32(1e-5)
ACT_QMAX = np.float32(127)


def quantize_weights(w):
    """Absmean ternary quantization of a float matrix.

    Returns ``(trits, weight_scale)``: an int8 matrix in {-1, 0, 1} and the float32
    scalar ``weight_scale`` with HF's meaning (``W ~ trits / weight_scale``).
    """
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TernaryError(f"weights: expected a float array, got dtype {w.dtype}")
    if w.ndim != 2 or w.size == 0:
        raise TernaryError(f"weights: expected a non-empty 2-D matrix, got shape {w.shape}")
    w = w.astype(np.float32)
    gamma = np.maximum(np.float32(np.abs(w).mean(dtype=np.float64)), WEIGHT_EPS)
    scale = np.float32(1.0) / gamma
    trits = np.clip(np.round(w * scale), -1, 1).astype(np.int8)
    return trits, np.float32(scale)


def quantize_activations(x):
    """Per-token absmax int8 quantization (last axis is the feature axis).

    Returns ``(x_q, input_scale)`` with ``x_q`` int8 and ``input_scale`` float32 of the
    shape of ``x`` with the last axis kept as 1.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TernaryError(f"activations: expected a float array, got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise TernaryError(f"activations: expected a non-empty feature axis, got shape {x.shape}")
    x = x.astype(np.float32)
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), ACT_EPS)
    # torch evaluates ``127 / t`` as ``t.reciprocal() * 127``, which can differ from a
    # true division in the last place; do the same to stay bit-exact.
    scale = (np.float32(1.0) / amax) * ACT_QMAX
    x_q = np.clip(np.round(x * scale), -128, 127).astype(np.int8)
    return x_q, scale.astype(np.float32)


def dequantize_output(acc, input_scale, weight_scale):
    """The float BitLinear output from the engine's integer accumulators (as HF does it)."""
    acc = np.asarray(acc)
    denom = np.float32(input_scale) * np.float32(weight_scale) if np.ndim(input_scale) == 0 \
        else np.asarray(input_scale, dtype=np.float32) * np.float32(weight_scale)
    return acc.astype(np.float32) / denom
