"""The one ``.safetensors`` reader: model files, HF checkpoints and training checkpoints.

The format is a little-endian u64 header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw data; nothing in it is executed. A model file
is untrusted input, so the header is validated field by field before any data is read
(:func:`parse_header`), and every error is one :class:`TernaryError` naming the file,
the tensor and the field. bfloat16 tensors (which numpy lacks, and ``safetensors.numpy``
therefore refuses) come back as float32.
"""

import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import TernaryError
from .json_text import parse_json

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
           "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
_BF16 = "BF16"
# The safetensors library's own bound on the header (100 MB).
MAX_HEADER_BYTES = 100_000_000


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _itemsize(dtype):
    return 2 if dtype == _BF16 else np.dtype(_DTYPES[dtype]).itemsize


def parse_header(raw, data_bytes, where):
    """Validate a header's JSON text; return ``(metadata, {name: (dtype, shape, start, end)})``.

    ``data_bytes`` is the size of the data section after the header. Each tensor must
    name a known dtype, a shape of non-negative integers and a ``[start, end]`` byte
    range inside the data that holds exactly the shape's bytes, and no two tensors may
    overlap.
    """
    header = parse_json(raw, f"{where}: the safetensors header", expect=dict)
    meta = header.pop("__metadata__", None) or {}
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise TernaryError(f"{where}: __metadata__ must map names to strings")
    entries = {}
    for name, info in header.items():
        tensor = f"{where}: tensor {name}"
        if not isinstance(info, dict):
            raise TernaryError(f"{tensor}: its header entry must be an object")
        missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
        if missing:
            raise TernaryError(f"{tensor}: its header entry has no {missing[0]}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or (dtype not in _DTYPES and dtype != _BF16):
            raise TernaryError(f"{tensor}: dtype {dtype!r} is not supported")
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise TernaryError(f"{tensor}: shape must be a list of non-negative integers, "
                               f"got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
            raise TernaryError(f"{tensor}: data_offsets must be two integers, got {offsets!r}")
        start, end = offsets
        if not 0 <= start <= end <= data_bytes:
            raise TernaryError(f"{tensor}: bytes {start}..{end} lie outside the file's "
                               f"{data_bytes} data bytes (truncated?)")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if end - start != count * _itemsize(dtype):
            raise TernaryError(f"{tensor}: has {end - start} bytes for shape {shape} of {dtype}")
        entries[name] = (dtype, tuple(shape), start, end)
    spans = sorted((s, e, n) for n, (_, _, s, e) in entries.items() if e > s)
    for (_, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise TernaryError(f"{where}: tensors {n0} and {n1} overlap in the file")
    return meta, entries


def read_safetensors(path, *, what=None):
    """``(metadata, {name: numpy array})`` of a safetensors file; bf16 as float32.

    ``what`` prefixes every error (default: the path). Raises :class:`TernaryError`
    for a file that is missing, truncated or malformed.
    """
    path = Path(path)
    where = what or str(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 8:
                raise TernaryError(f"{where}: too short to be a safetensors file")
            f.seek(0)
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise TernaryError(f"{where}: the safetensors header length {n} is past the "
                                   f"file's end (truncated?) or too large")
            meta, entries = parse_header(f.read(n), size - 8 - n, where)
            if not entries:
                return meta, {}
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                data = memoryview(mm)[8 + n:]
                try:
                    return meta, {name: _array(data[start:end], dtype, shape)
                                  for name, (dtype, shape, start, end) in entries.items()}
                finally:
                    data.release()
    except OSError as exc:
        raise TernaryError(f"{where}: cannot read it ({exc.strerror or exc})") from None


def _array(buf, dtype, shape):
    if dtype == _BF16:
        arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        arr = np.frombuffer(buf, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<")).copy()
    return arr.reshape(shape)
