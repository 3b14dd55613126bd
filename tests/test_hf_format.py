import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ternary_core.formats import hf_bitnet as hf
from ternary_core.errors import TernaryError
from tests.helpers import random_trits


def transcribed_hf_pack(w):
    """A line-by-line transcription of transformers.integrations.bitnet.pack_weights."""
    out = w.shape[0]
    row_dim = (out + 3) // 4
    packed = np.zeros((row_dim, w.shape[1]), dtype=np.uint8)
    unpacked = (w + 1).astype(np.uint8)
    it = min(4, (out // row_dim) + 1)
    for i in range(it):
        start = i * row_dim
        end = min(start + row_dim, out)
        packed[: (end - start)] |= unpacked[start:end] << 2 * i
    return packed


@settings(max_examples=60, deadline=None)
@given(out=st.integers(1, 45), k=st.integers(1, 20), data_seed=st.integers(0, 2**32 - 1))
def test_hf_pack_matches_transcription_and_round_trips(out, k, data_seed):
    w = random_trits(np.random.default_rng(data_seed), out, k)
    packed = hf.pack(w)
    np.testing.assert_array_equal(packed, transcribed_hf_pack(w))
    np.testing.assert_array_equal(hf.unpack(packed, out), w)


def test_hf_bit_layout_row_r_plus_i_times_quarter():
    w = np.zeros((8, 1), dtype=np.int8)
    w[5, 0] = 1  # row 5 = r 1 + i 2 * (8/4) -> packed[1] bits 4..5 = code 2
    packed = hf.pack(w)
    assert packed[:, 0].tolist() == [0b01010101, 0b01100101]


def test_hf_unpack_checks_shape():
    with pytest.raises(TernaryError, match="do not hold"):
        hf.unpack(np.zeros((3, 4), dtype=np.uint8), 16)
    with pytest.raises(TernaryError, match="uint8"):
        hf.unpack(np.zeros((4, 4), dtype=np.int32), 16)
