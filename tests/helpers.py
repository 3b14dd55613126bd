"""Small generators shared by the test suites."""

import numpy as np


def random_trits(rng, m, k, p_zero=1 / 3):
    """A random ternary matrix with a given share of zeros."""
    nz = rng.random((m, k)) >= p_zero
    sign = np.where(rng.random((m, k)) < 0.5, -1, 1)
    return (nz * sign).astype(np.int8)


def random_int8(rng, n):
    return rng.integers(-128, 128, size=n, dtype=np.int16).astype(np.int8)
