"""Read a ``.safetensors`` file into numpy, including bfloat16 (which numpy lacks and
``safetensors.numpy`` therefore refuses): bf16 tensors come back as float32.

The format is a little-endian u64 header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw data; nothing in it is executed.
"""

import json
import struct
from pathlib import Path

import numpy as np

from ..errors import TernaryError

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """Return ``({name: array}, metadata)``; raise :class:`TernaryError` on a bad file."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8:
        raise TernaryError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack_from("<Q", raw)
    if n > len(raw) - 8:
        raise TernaryError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(raw[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TernaryError(f"{path}: bad safetensors header ({exc})") from None
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise TernaryError(f"{path}: tensor {name} has a malformed header entry") from None
        if not 0 <= start <= end <= len(data):
            raise TernaryError(f"{path}: tensor {name} lies outside the file (truncated?)")
        buf = data[start:end]
        count = int(np.prod(shape)) if shape else 1
        if dtype == "BF16":
            if len(buf) != 2 * count:
                raise TernaryError(f"{path}: tensor {name} has {len(buf)} bytes for shape {shape}")
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _DTYPES:
            dt = np.dtype(_DTYPES[dtype]).newbyteorder("<")
            if len(buf) != dt.itemsize * count:
                raise TernaryError(f"{path}: tensor {name} has {len(buf)} bytes for shape {shape}")
            arr = np.frombuffer(buf, dtype=dt)
        else:
            raise TernaryError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        out[name] = arr.reshape(shape).copy()
    return out, meta
