"""Argument checks that give one-line, named errors instead of numpy tracebacks."""

import numpy as np

from .errors import TernaryError


def as_int_array(name, a, *, ndim=None, dtype_kinds="iu"):
    """Return ``a`` as a numpy array, checking it is an integer array of ``ndim`` dims."""
    arr = np.asarray(a)
    if arr.dtype.kind not in dtype_kinds:
        raise TernaryError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise TernaryError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def ternary_matrix(name, w):
    """Check ``w`` is a 2-D integer matrix with values in {-1, 0, 1}; return it as int8."""
    arr = as_int_array(name, w, ndim=2)
    if arr.size and (arr.min() < -1 or arr.max() > 1):
        bad = arr[(arr < -1) | (arr > 1)].flat[0]
        raise TernaryError(f"{name}: weights must be ternary (-1, 0, 1); found {int(bad)}")
    return arr.astype(np.int8)


def int8_vector(name, x):
    """Check ``x`` is a 1-D integer vector within int8 range; return it as int8."""
    arr = as_int_array(name, x, ndim=1)
    if arr.size and (arr.min() < -128 or arr.max() > 127):
        raise TernaryError(f"{name}: activations must be int8 (-128..127); found range "
                           f"{int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int8)


def uint8_bytes(name, data, *, length=None):
    """Accept bytes/bytearray/uint8 arrays; return a 1-D uint8 array, optionally of a set length."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        arr = np.asarray(data)
        if arr.dtype != np.uint8:
            raise TernaryError(f"{name}: expected bytes or a uint8 array, got dtype {arr.dtype}")
        arr = arr.reshape(-1)
    if length is not None and arr.size != length:
        raise TernaryError(f"{name}: expected {length} bytes, got {arr.size}")
    return arr


def positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise TernaryError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)
