import numpy as np
import pytest
from gguf import quants
from hypothesis import given, settings, strategies as st

from ternary_core.formats import gguf as gguf_format
from ternary_core.errors import TernaryError
from tests.helpers import random_trits


@settings(max_examples=30, deadline=None)
@given(qtype=st.sampled_from(["TQ1_0", "TQ2_0"]), m=st.integers(1, 6), blocks=st.integers(1, 3),
       data_seed=st.integers(0, 2**32 - 1))
def test_tq_round_trip_and_matches_gguf_dequantize(qtype, m, blocks, data_seed):
    rng = np.random.default_rng(data_seed)
    k = blocks * 256
    w = random_trits(rng, m, k)
    scales = rng.uniform(0.01, 2.0, size=(m, blocks)).astype(np.float16).astype(np.float32)
    data = gguf_format.pack(w, scales, qtype)
    assert data.size == m * blocks * gguf_format.BLOCK_BYTES[qtype]
    trits, got_scales = gguf_format.unpack(data, (m, k), qtype)
    np.testing.assert_array_equal(trits, w)
    np.testing.assert_array_equal(got_scales, scales)
    # Cross-check our integer unpacker against the gguf package's float dequantizer.
    ref = quants.dequantize(data.reshape(m, -1), gguf_format.QTYPES[qtype])
    np.testing.assert_array_equal(ref, trits * np.repeat(got_scales, 256, axis=1))


def test_tq_all_zero_block_keeps_zero_trits():
    w = np.zeros((1, 256), dtype=np.int8)
    trits, scales = gguf_format.unpack(gguf_format.pack(w, 1.0, "TQ1_0"), (1, 256), "TQ1_0")
    assert not trits.any()


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0"])
def test_tq_rejects_rows_not_multiple_of_block(qtype):
    with pytest.raises(TernaryError, match="multiple of 256"):
        gguf_format.pack(np.zeros((2, 300), dtype=np.int8), 1.0, qtype)


def test_tq_rejects_truncated_data_and_unknown_type():
    w = np.ones((2, 256), dtype=np.int8)
    data = gguf_format.pack(w, 1.0, "TQ2_0")
    with pytest.raises(TernaryError, match="expected 132 bytes"):
        gguf_format.unpack(data[:-1], (2, 256), "TQ2_0")
    with pytest.raises(TernaryError, match="TQ1_0 or TQ2_0"):
        gguf_format.unpack(data, (2, 256), "Q4_0")
