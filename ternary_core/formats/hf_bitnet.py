"""HF transformers' BitNet offline packing (``transformers.integrations.bitnet``).

``pack_weights`` turns a ternary ``out x in`` matrix into a uint8 tensor of shape
``(ceil(out/4), in)``: the stored value ``w+1`` takes 2 bits, and bits ``2i..2i+1`` of
``packed[r, c]`` hold weight row ``r + i*ceil(out/4)``, column ``c``. Rows past ``out``
are left 0 by the packer (and so unpack as -1 in HF's own unpacker); :func:`unpack`
drops them, given ``out_features``.
"""

import numpy as np

from ..checks import as_int_array, positive_int, ternary_matrix
from ..errors import TernaryError

VALUES_PER_ITEM = 4


def pack(w):
    """Ternary ``out x in`` matrix -> HF packed uint8 ``(ceil(out/4), in)``."""
    w = ternary_matrix("weights", w)
    out, k = w.shape
    row_dim = -(-out // VALUES_PER_ITEM)
    padded = np.full((row_dim * VALUES_PER_ITEM, k), -1, dtype=np.int8)  # code 0, as HF leaves it
    padded[:out] = w
    codes = (padded + 1).astype(np.uint8).reshape(VALUES_PER_ITEM, row_dim, k)
    return codes[0] | (codes[1] << 2) | (codes[2] << 4) | (codes[3] << 6)


def unpack(packed, out_features):
    """HF packed uint8 ``(ceil(out/4), in)`` -> int8 ``out x in`` matrix."""
    packed = as_int_array("packed weights", packed, ndim=2)
    if packed.dtype != np.uint8:
        raise TernaryError(f"packed weights: expected uint8, got {packed.dtype}")
    out = positive_int("out_features", out_features)
    if packed.shape[0] != -(-out // VALUES_PER_ITEM):
        raise TernaryError(f"packed weights: {packed.shape[0]} packed rows do not hold "
                           f"{out} output rows (expected {-(-out // VALUES_PER_ITEM)})")
    codes = np.concatenate([(packed >> (2 * i)) & 3 for i in range(VALUES_PER_ITEM)], axis=0)[:out]
    if (codes == 3).any():
        raise TernaryError("packed weights: code 3 is not a trit (codes are w+1 in 0..2)")
    return codes.astype(np.int8) - 1
