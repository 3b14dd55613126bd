import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ternary_core.errors import TernaryError
from ternary_core.formats.native import TileLayout, decode_base3, encode_base3, decode_2bit, encode_2bit
from tests.helpers import random_trits

ARRAYS = [(4, 8, "2bit"), (4, 10, "base3"), (1, 4, "2bit"), (1, 5, "base3"), (8, 16, "2bit"),
          (5, 8, "base3"), (2, 2, "2bit"), (3, 5, "base3")]


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 70), st.integers(1, 90)), array=st.sampled_from(ARRAYS),
       data_seed=st.integers(0, 2**32 - 1))
def test_native_layout_round_trips_any_shape(shape, array, data_seed):
    layout = TileLayout(*array)
    w = random_trits(np.random.default_rng(data_seed), *shape)
    packed = layout.pack(w)
    assert packed.dtype == np.uint8
    assert packed.size == layout.packed_bytes(*shape)
    np.testing.assert_array_equal(layout.unpack(packed, *shape), w)


def test_native_word_holds_one_tile_row_major():
    # A 2x4 array in 2bit: one word = 8 trits = 2 bytes; trit n = r*cols + c.
    layout = TileLayout(2, 4, "2bit")
    w = np.zeros((2, 8), dtype=np.int8)
    w[1, 5] = 1    # tile (0, 1), r=1, c=1 -> word 1, trit 5 -> byte 1, bits 2..3
    w[0, 0] = -1   # tile (0, 0), trit 0 -> byte 0 bits 0..1 = code 0
    packed = layout.pack(w)
    assert packed.tolist() == [0b01010100, 0b01010101, 0b01010101, 0b01011001]


def test_base3_byte_matches_tq1_0_definition():
    # trits (1, 0, -1, 1, 1): codes 2,1,0,2,2 -> v = 2*81+27+0+6+2 = 197 -> ceil(197*256/243)
    byte = encode_base3(np.array([1, 0, -1, 1, 1]))
    assert byte.tolist() == [-(-197 * 256 // 243)]
    assert decode_base3(byte).tolist() == [1, 0, -1, 1, 1]


def test_base3_decodes_all_243_codes_exactly():
    digits = np.array(np.meshgrid(*[[-1, 0, 1]] * 5, indexing="ij")).reshape(5, -1).T
    assert len(digits) == 243
    np.testing.assert_array_equal(decode_base3(encode_base3(digits.reshape(-1))).reshape(-1, 5), digits)


def test_2bit_rejects_code_3():
    with pytest.raises(TernaryError, match="code 3"):
        decode_2bit(np.array([0xFF], dtype=np.uint8))
    assert decode_2bit(encode_2bit(np.array([-1, 0, 1, 1]))).tolist() == [-1, 0, 1, 1]


@pytest.mark.parametrize("bad, match", [
    (np.array([[0, 2]]), "ternary"),
    (np.array([[0.0, 1.0]]), "integer"),
    (np.array([0, 1, -1]), "2 dimensions"),
])
def test_pack_rejects_bad_weights(bad, match):
    with pytest.raises(TernaryError, match=match):
        TileLayout(4, 8, "2bit").pack(bad)


def test_layout_rejects_tiles_that_do_not_fill_bytes():
    with pytest.raises(TernaryError, match="multiple of 5"):
        TileLayout(4, 8, "base3")
    with pytest.raises(TernaryError, match="format"):
        TileLayout(4, 8, "3bit")


def test_unpack_rejects_wrong_length():
    layout = TileLayout(4, 8, "2bit")
    with pytest.raises(TernaryError, match="expected 8 bytes"):
        layout.unpack(b"\x55" * 7, 4, 8)
