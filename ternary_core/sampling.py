"""Next-token sampling: greedy, temperature, top-k; seeded."""

import numpy as np

from .errors import TernaryError


class Sampler:
    def __init__(self, temperature=0.0, top_k=0, seed=0):
        if temperature < 0:
            raise TernaryError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        if top_k < 0:
            raise TernaryError(f"top-k must be >= 0 (0 is all tokens), got {top_k}")
        self.temperature, self.top_k = float(temperature), int(top_k)
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits):
        logits = np.asarray(logits, dtype=np.float64)
        if self.temperature == 0:
            return int(np.argmax(logits))
        # differences from the largest, so a tiny temperature makes -inf and 0, never
        # inf - inf: the limit is argmax, as on the integer backend
        with np.errstate(over="ignore"):
            z = (logits - logits.max()) / self.temperature
        if 0 < self.top_k < z.size:
            cut = np.partition(z, -self.top_k)[-self.top_k]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z)
        p /= p.sum()
        return int(self.rng.choice(z.size, p=p))
