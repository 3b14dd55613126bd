"""The golden model of the engine: what every result word of the RTL must equal.

The engine computes only the integer part of a BitLinear, ``acc = W~ . x_q`` with
``W~`` ternary and ``x_q`` int8. Each term is at most 128 in magnitude, so the sum
over ``K`` terms lies in ``[-128K, 128K]``; the signed accumulator that holds that
range has ``(128*K).bit_length() + 1`` bits. (The often-quoted
``ceil(log2(128K)) + 1`` is one bit short when ``128K`` is a power of two:
``K = 4096`` reaches exactly ``+2**19`` with all activations -128 and all weights -1.)
"""

import numpy as np

from .checks import int8_vector, positive_int, ternary_matrix
from .errors import TernaryError


def accumulator_bits(max_k):
    """Width of the signed accumulator that holds any ``W~ . x_q`` with ``K <= max_k``."""
    return (128 * positive_int("max_k", max_k)).bit_length() + 1


def matvec(w, x, acc_bits=None):
    """``acc = W~ . x_q`` as int32, exactly as the engine computes it.

    ``w`` is a ternary ``M x K`` matrix, ``x`` an int8 vector of ``K``. If ``acc_bits``
    is given, the result is checked to fit a signed accumulator of that width.
    """
    w = ternary_matrix("weights", w)
    x = int8_vector("activations", x)
    if w.shape[1] != x.shape[0]:
        raise TernaryError(f"shapes: weights are {w.shape[0]}x{w.shape[1]} but activations "
                           f"have {x.shape[0]} values")
    acc = w.astype(np.int64) @ x.astype(np.int64)
    if acc_bits is not None and acc.size:
        lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        if acc.min() < lo or acc.max() > hi:
            raise TernaryError(f"accumulator of {acc_bits} bits overflows for K={x.shape[0]}")
    return acc.astype(np.int32)


def ideal_cycles(m, k, rows, cols):
    """Cycles of an ``m x k`` matvec on a ``rows x cols`` array at one tile per cycle."""
    return (-(-positive_int("m", m) // positive_int("rows", rows))) * \
        (-(-positive_int("k", k) // positive_int("cols", cols)))
