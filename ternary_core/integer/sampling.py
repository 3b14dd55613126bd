"""Integer next-token sampling: argmax, or temperature/top-k sampling driven by xorshift32.

Everything a chip does per token is integer: the differences ``max - logit`` (Q15.16)
times one constant ``log2(e) / temperature`` (a scalar, computed once on the host when
the temperature is set) give log2-domain weights in Q.8, the softmax's 256-entry
``2**-f`` table turns them into Q1.15 weights, and a draw ``r = (u * sum) >> 32`` with
``u`` from xorshift32 picks the first token whose running sum exceeds ``r``.

Random numbers: Marsaglia's xorshift32 (``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` on
32 bits), seeded with ``seed`` mixed by the golden-ratio constant (a zero state is
replaced by 1). One 32-bit draw per sampled token, so a device reproduces the sequence
from ``--seed`` alone.
"""

import numpy as np

from ..errors import TernaryError
from .fixed import exp2_neg, scalar_from_float, shift_round
from .ops import LOGIT_FRAC_BITS, SCORE_FRAC_BITS

MASK32 = 0xFFFFFFFF

# The bounds of inv_t = log2(e)/temperature. The weights' exponent is
# z = d * inv_t / 2**8 (d = max - logit in Q15.16). From 2**30 on, every logit below the
# largest has z >= 2**22, far past the 17 * 2**8 where exp2 gives weight 0; up to
# 2**-40, every z < 2**32 * 2**-48 rounds to 0 (all weights equal). So clamping changes
# no weight, and keeps d * m * 2**(e - 8) inside int64 (an unclamped 1/1e-30 wrapped
# around and sampled noise) and the exponent inside the device's RUN field.
INV_T_MAX = 2.0 ** 30
INV_T_MIN = 2.0 ** -40


def xorshift32_seed(seed):
    """The generator's first state for a user seed (any integer)."""
    s = (int(seed) ^ 0x9E3779B9) & MASK32
    return s or 1


def xorshift32(state):
    """One step: returns the new state (which is also the draw)."""
    state ^= (state << 13) & MASK32
    state ^= state >> 17
    state ^= (state << 5) & MASK32
    return state & MASK32


def inv_temperature(temperature):
    """log2(e) / ``temperature`` (> 0) clamped to [INV_T_MIN, INV_T_MAX]: the same weights
    as the exact value, for any finite temperature (1e-320 included)."""
    with np.errstate(over="ignore"):
        x = np.log2(np.e) / temperature
    return float(min(max(x, INV_T_MIN), INV_T_MAX))


class IntegerSampler:
    """``IntegerSampler(temperature, top_k, seed)(int_logits) -> token id``.

    ``int_logits`` are Q15.16 integers (:class:`~.runner.IntegerRunner`). Temperature 0
    is argmax with ties to the lowest index. ``top_k`` keeps the k largest logits (ties
    to the lowest index); 0 keeps all.
    """

    def __init__(self, temperature=0.0, top_k=0, seed=0):
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature)
                and temperature >= 0):
            raise TernaryError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise TernaryError(f"top-k must be an integer >= 0 (0 is all tokens), got {top_k}")
        self.temperature, self.top_k = float(temperature), int(top_k)
        self.state = xorshift32_seed(seed)
        # host, once: the multiplier from logit units (Q15.16) to log2 units (Q.8)
        self.inv_t = (scalar_from_float(inv_temperature(self.temperature))
                      if self.temperature > 0 else None)

    def weights(self, logits):
        """The integer sampling weights (Q1.15; 0 outside the top-k) for ``logits``."""
        logits = np.asarray(logits, np.int64)
        d = logits.max() - logits
        z = shift_round(d * self.inv_t.m, -(self.inv_t.e - LOGIT_FRAC_BITS + SCORE_FRAC_BITS))
        w = exp2_neg(np.minimum(z, 1 << 30))
        if 0 < self.top_k < logits.size:
            order = np.lexsort((np.arange(logits.size), -logits))   # largest first, low index first
            keep = np.zeros(logits.size, bool)
            keep[order[:self.top_k]] = True
            w = np.where(keep, w, 0)
        return w

    def __call__(self, logits):
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.size == 0 or logits.dtype.kind not in "iu":
            raise TernaryError("logits: expected a non-empty 1-D integer array (Q15.16)")
        if self.temperature == 0:
            return int(np.argmax(logits))
        w = self.weights(logits)
        self.state = xorshift32(self.state)
        r = (self.state * int(w.sum())) >> 32
        return int(np.searchsorted(np.cumsum(w), r, side="right"))
