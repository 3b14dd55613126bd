"""The engine's native packed-weight layouts.

The weight memory is read one *word* per cycle and one word is one *tile*: the
``rows x cols`` block of the weight matrix that the MAC array consumes in that
cycle. A matrix ``W`` of ``M x K`` trits is stored as follows.

1. Pad ``W`` with zeros to ``Mt*rows x Kt*cols`` where ``Mt = ceil(M/rows)`` and
   ``Kt = ceil(K/cols)``. Padding trits are 0, so whatever sits in the activation
   buffer past ``K`` adds nothing.
2. Word ``t = i*Kt + j`` holds tile ``W[i*rows:(i+1)*rows, j*cols:(j+1)*cols]``;
   inside the word, trit ``n = r*cols + c`` (row-major).
3. Trits become bytes with one of two codecs; byte ``b`` of a word is bits
   ``8b .. 8b+7`` of the memory word (little-endian).

``2bit``  four trits per byte, code ``w+1`` in {0,1,2}; trit ``n`` of the word is at
          bits ``2(n%4)`` of byte ``n//4`` (the same code as GGUF TQ2_0 and the HF
          offline packing). 2 bits per trit.
``base3`` five trits per byte, as in GGUF TQ1_0: ``v = sum_k (w_k+1) 3^(4-k)`` over
          trits ``5b..5b+4`` (first trit most significant) and the byte is
          ``ceil(v*256/243)``. Trit ``k`` comes back as ``q = (byte*3^k) mod 256``,
          ``w_k = ((q*3) >> 8) - 1``: no division, and the hardware does the
          multiplications by constants as shifts and adds. 1.6 bits per trit.

So a word holds ``rows*cols`` trits, and ``rows*cols`` must be a multiple of 4
(``2bit``) or 5 (``base3``).
"""

from dataclasses import dataclass

import numpy as np

from ..checks import positive_int, ternary_matrix, uint8_bytes
from ..errors import TernaryError

FORMATS = ("2bit", "base3")
TRITS_PER_BYTE = {"2bit": 4, "base3": 5}
# Wire codes of the formats (INFO reply); the RTL and the host both import these.
FORMAT_CODES = {"2bit": 0, "base3": 1}

_POW3_DESC = np.array([81, 27, 9, 3, 1], dtype=np.uint16)
_POW3_ASC = np.array([1, 3, 9, 27, 81], dtype=np.uint16)


def check_format(fmt):
    if fmt not in FORMATS:
        raise TernaryError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def encode_2bit(trits):
    """Flat trits (length a multiple of 4) -> bytes, trit i at bits 2(i%4) of byte i//4."""
    codes = (np.asarray(trits, dtype=np.int16) + 1).astype(np.uint8).reshape(-1, 4)
    return codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)


def decode_2bit(data):
    """Bytes -> flat trits (int8), four per byte. Code 3 is not a trit and is rejected."""
    data = np.asarray(data, dtype=np.uint8)
    codes = (data[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
    if (codes == 3).any():
        raise TernaryError("2bit data: code 3 is not a trit (codes are w+1 in 0..2)")
    return (codes.astype(np.int8) - 1).reshape(-1)


def encode_base3(trits):
    """Flat trits (length a multiple of 5) -> bytes, five per byte (TQ1_0 packing)."""
    codes = (np.asarray(trits, dtype=np.int16) + 1).astype(np.uint16).reshape(-1, 5)
    v = (codes * _POW3_DESC).sum(axis=1)
    return ((v * 256 + 242) // 243).astype(np.uint8)


def decode_base3(data):
    """Bytes -> flat trits (int8), five per byte, with the multiply-free TQ1_0 trick."""
    data = np.asarray(data, dtype=np.uint8).astype(np.uint16)
    q = (data[:, None] * _POW3_ASC) & 0xFF
    return (((q * 3) >> 8).astype(np.int8) - 1).reshape(-1)


_ENCODE = {"2bit": encode_2bit, "base3": encode_base3}
_DECODE = {"2bit": decode_2bit, "base3": decode_base3}


@dataclass(frozen=True)
class TileLayout:
    """Native layout for an array of ``rows x cols`` MACs and a weight format."""

    rows: int
    cols: int
    fmt: str

    def __post_init__(self):
        positive_int("rows", self.rows)
        positive_int("cols", self.cols)
        check_format(self.fmt)
        per = TRITS_PER_BYTE[self.fmt]
        if (self.rows * self.cols) % per:
            raise TernaryError(f"rows*cols = {self.rows * self.cols} must be a multiple of {per} "
                               f"for the {self.fmt} format (a memory word is one tile)")

    @property
    def word_trits(self):
        return self.rows * self.cols

    @property
    def word_bytes(self):
        return self.word_trits // TRITS_PER_BYTE[self.fmt]

    def tiles(self, m, k):
        """``(Mt, Kt)``: row tiles and column tiles of an ``m x k`` matrix."""
        return -(-positive_int("m", m) // self.rows), -(-positive_int("k", k) // self.cols)

    def words(self, m, k):
        mt, kt = self.tiles(m, k)
        return mt * kt

    def packed_bytes(self, m, k):
        return self.words(m, k) * self.word_bytes

    def pack(self, w):
        """Ternary ``M x K`` matrix -> uint8 array of ``words(M, K) * word_bytes`` bytes."""
        w = ternary_matrix("weights", w)
        m, k = w.shape
        mt, kt = self.tiles(m, k)
        padded = np.zeros((mt * self.rows, kt * self.cols), dtype=np.int8)
        padded[:m, :k] = w
        tiles = padded.reshape(mt, self.rows, kt, self.cols).transpose(0, 2, 1, 3)
        return _ENCODE[self.fmt](tiles.reshape(-1))

    def unpack(self, data, m, k):
        """Inverse of :meth:`pack`: bytes -> int8 ``m x k`` matrix (padding dropped)."""
        mt, kt = self.tiles(m, k)
        data = uint8_bytes("packed weights", data, length=mt * kt * self.word_bytes)
        trits = _DECODE[self.fmt](data)
        tiles = trits.reshape(mt, kt, self.rows, self.cols).transpose(0, 2, 1, 3)
        return tiles.reshape(mt * self.rows, kt * self.cols)[:m, :k].copy()
