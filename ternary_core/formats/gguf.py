"""GGUF ternary tensors: TQ1_0 and TQ2_0 (blocks of 256 along each row).

Packing uses the ``gguf`` package's own quantizers: a ternary row times its block
scale ``d`` quantizes back to exactly those trits (``d`` is the block's absmax).
Unpacking to *integer* trits is done here, in the layout the reference dequantizers
read, so that the importer keeps the trits exact and the scale separate:

TQ2_0 block (66 bytes): ``qs[64]`` then fp16 ``d``. Trit ``n = 128h + 32i + j`` is
      bits ``2i`` of ``qs[32h + j]``, stored as ``w+1``.
TQ1_0 block (54 bytes): ``qs[48]``, ``qh[4]``, fp16 ``d``. Base-3 bytes as in
      :mod:`ternary_core.formats.native` (digit ``k`` is ``((byte*3^k mod 256)*3) >> 8``):
      trit ``n = 32k + j`` (n < 160) is digit ``k`` of ``qs[j]``; trit ``160 + 16k + j``
      is digit ``k`` of ``qs[32 + j]``; trit ``240 + 4k + j`` is digit ``k`` of ``qh[j]``.
"""

import numpy as np
from gguf import GGMLQuantizationType, quants

from ..checks import ternary_matrix, uint8_bytes
from ..errors import TernaryError

BLOCK = 256
QTYPES = {"TQ1_0": GGMLQuantizationType.TQ1_0, "TQ2_0": GGMLQuantizationType.TQ2_0}
BLOCK_BYTES = {"TQ1_0": 54, "TQ2_0": 66}
_POW3_ASC = np.array([1, 3, 9, 27, 81], dtype=np.uint16)


def _check_qtype(qtype):
    if qtype not in QTYPES:
        raise TernaryError(f"qtype: expected TQ1_0 or TQ2_0, got {qtype!r}")


def _check_row(k):
    if k % BLOCK:
        raise TernaryError(f"GGUF ternary rows must be a multiple of {BLOCK} values; got {k}")


def pack(trits, scales, qtype):
    """Ternary ``M x K`` matrix and per-block scales ``M x K/256`` (or a scalar) -> bytes."""
    _check_qtype(qtype)
    w = ternary_matrix("weights", trits)
    m, k = w.shape
    _check_row(k)
    scales = np.broadcast_to(np.asarray(scales, dtype=np.float32), (m, k // BLOCK))
    if (scales < 0).any() or not np.isfinite(scales).all():
        raise TernaryError("scales: block scales must be finite and non-negative")
    values = w.astype(np.float32) * np.repeat(scales, BLOCK, axis=1)
    return np.asarray(quants.quantize(values, QTYPES[qtype])).reshape(-1)


def _decode_base3(data, ndigits):
    q = (data.astype(np.uint16)[..., None, :] * _POW3_ASC[:ndigits, None]) & 0xFF
    return ((q * 3) >> 8).astype(np.int8) - 1  # (..., digit, byte)


def unpack(data, shape, qtype):
    """Bytes of an ``M x K`` TQ tensor -> ``(trits int8 M x K, scales float32 M x K/256)``."""
    _check_qtype(qtype)
    m, k = shape
    _check_row(k)
    nblocks = m * k // BLOCK
    blocks = uint8_bytes("GGUF tensor data", data, length=nblocks * BLOCK_BYTES[qtype])
    blocks = blocks.reshape(nblocks, BLOCK_BYTES[qtype])
    scales = blocks[:, -2:].copy().view(np.float16).astype(np.float32).reshape(m, k // BLOCK)
    if qtype == "TQ2_0":
        qs = blocks[:, :64].reshape(nblocks, 2, 1, 32)
        codes = (qs >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
        if (codes == 3).any():
            raise TernaryError("TQ2_0 data: code 3 is not a trit")
        trits = codes.astype(np.int8).reshape(nblocks, BLOCK) - 1
    else:
        t0 = _decode_base3(blocks[:, :32], 5).reshape(nblocks, 160)
        t1 = _decode_base3(blocks[:, 32:48], 5).reshape(nblocks, 80)
        t2 = _decode_base3(blocks[:, 48:52], 4).reshape(nblocks, 16)
        trits = np.concatenate([t0, t1, t2], axis=1)
    return trits.reshape(m, k), scales
