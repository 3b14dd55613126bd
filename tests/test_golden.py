import numpy as np
import pytest

from ternary_core.engine_config import EngineConfig
from ternary_core.errors import TernaryError
from ternary_core.golden import accumulator_bits, ideal_cycles, matvec
from tests.helpers import random_int8, random_trits


def test_matvec_equals_float_dot_on_random_data(rng):
    w = random_trits(rng, 37, 91)
    x = random_int8(rng, 91)
    expected = [sum(int(a) * int(b) for a, b in zip(row, x)) for row in w]
    assert matvec(w, x).tolist() == expected


def test_accumulator_holds_the_extremes_at_max_k():
    k = 4096  # 128*K is a power of two: the extreme needs the extra bit
    bits = accumulator_bits(k)
    assert bits == 21
    x = np.full(k, -128, dtype=np.int8)
    w = np.stack([np.full(k, -1), np.full(k, 1), np.zeros(k)]).astype(np.int8)
    assert matvec(w, x, acc_bits=bits).tolist() == [128 * k, -128 * k, 0]
    with pytest.raises(TernaryError, match="overflows"):
        matvec(w, x, acc_bits=bits - 1)


@pytest.mark.parametrize("k", [1, 5, 127, 128, 1000, 4095, 4097])
def test_accumulator_bits_is_the_smallest_that_fits(k):
    bits = accumulator_bits(k)
    assert 128 * k <= (1 << (bits - 1)) - 1   # +128K (all -128 times all -1) fits
    assert 128 * k > (1 << (bits - 2)) - 1    # one bit fewer would not hold it


def test_ideal_cycles_rounds_tiles_up():
    assert ideal_cycles(256, 256, 4, 8) == 64 * 32
    assert ideal_cycles(5, 9, 4, 8) == 2 * 2


def test_matvec_rejects_bad_inputs():
    with pytest.raises(TernaryError, match="shapes"):
        matvec(np.zeros((2, 3), np.int8), np.zeros(4, np.int8))
    with pytest.raises(TernaryError, match="int8"):
        matvec(np.zeros((2, 3), np.int8), np.array([0, 300, 0]))
    with pytest.raises(TernaryError, match="ternary"):
        matvec(np.full((2, 3), 2), np.zeros(3, np.int8))


def test_engine_config_checks_shapes():
    cfg = EngineConfig(rows=4, cols=10, fmt="base3", max_m=64, max_k=128)
    assert cfg.word_bytes == 8 and cfg.acc_bits == 16 and cfg.result_bytes == 2
    with pytest.raises(TernaryError, match="max_k"):
        cfg.check_shape(4, 129)
    with pytest.raises(TernaryError, match="positive integer"):
        EngineConfig(rows=0)
