"""Random BitNet models of any shape, for the benchmarks' cycle counts and the tests: the
weights' values do not change what a device computes or how long it takes."""

import numpy as np

from .file import BitLinearWeights, BitNetModel, float_tensor_shapes


def random_trits(rng, m, k, p_zero=1 / 3):
    """A random ternary matrix with a given share of zeros."""
    nz = rng.random((m, k)) >= p_zero
    sign = np.where(rng.random((m, k)) < 0.5, -1, 1)
    return (nz * sign).astype(np.int8)


def random_model(rng, config):
    """A :class:`BitNetModel` of ``config`` with N(0, 1) float tensors, norm gains in
    [0.5, 1.5), random trits and weight scales in [0.5, 4)."""
    m = BitNetModel(config, {"type": "bytes"})
    for name, shape in float_tensor_shapes(config).items():
        m.floats[name] = (rng.normal(size=shape) if len(shape) == 2 else 0.5 + rng.random(shape)).astype(np.float32)
    for name, (out, k) in config.bitlinear_shapes().items():
        m.bitlinears[name] = BitLinearWeights(random_trits(rng, out, k), np.float32(rng.uniform(0.5, 4)))
    return m
