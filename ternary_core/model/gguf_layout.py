"""A GGUF file's header and metadata walked against its size, before ``gguf.GGUFReader``
reads it: the reader loops over every count the file declares, and past the end of the
file its reads return nothing, so a 68-byte file declaring an array of 2**40 values held
it for minutes while it grew by gigabytes. Here every count is checked against the bytes
left (each value takes at least one byte), so the walk is bounded by the file's size."""

import mmap
import os
import struct

from ..errors import TernaryError

# GGUFValueType: sizes of the fixed-width types (8 STRING and 9 ARRAY are walked)
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
# the smallest tensor info: an empty name (8), n_dims (4), a dimension (8), type (4), offset (8)
_MIN_TENSOR_INFO = 32


class _Walk:
    def __init__(self, data, path):
        self.data, self.path, self.at = data, path, 0

    def fail(self, what):
        raise TernaryError(f"{self.path}: not a readable GGUF file ({what} runs past the end "
                           f"of the file, {len(self.data):,} bytes)")

    def take(self, n, what):
        if n > len(self.data) - self.at:
            self.fail(what)
        start, self.at = self.at, self.at + n
        return self.data[start:self.at]

    def u32(self, what):
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what):
        return struct.unpack("<Q", self.take(8, what))[0]

    def string(self, what):
        self.take(self.u64(what), what)

    def value(self, vtype, what, depth=0):
        if vtype in _FIXED:
            self.take(_FIXED[vtype], what)
        elif vtype == _STRING:
            self.string(what)
        elif vtype == _ARRAY and depth < 4:
            itype, count = self.u32(what), self.u64(what)
            size = _FIXED.get(itype, 8)     # a string's length or an array's header at least
            if count * size > len(self.data) - self.at:
                self.fail(f"{what} (an array of {count:,} values)")
            for _ in range(count) if itype not in _FIXED else ():
                self.value(itype, what, depth + 1)
            if itype in _FIXED:
                self.take(count * size, what)
        else:
            raise TernaryError(f"{self.path}: not a readable GGUF file ({what} has value type "
                               f"{vtype}, which GGUF does not define)")


def check_gguf_layout(path):
    """Refuse (TernaryError naming the field) a GGUF whose header or metadata declares more
    than the file holds. Versions other than 2 and 3 are left to the reader."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    try:
        _walk(_Walk(data, path))
    finally:
        if size:
            data.close()


def _walk(w):
    path, data = w.path, w.data
    if w.take(4, "the magic") != b"GGUF":
        raise TernaryError(f"{path}: not a GGUF file (no GGUF magic)")
    version = w.u32("the version")
    if version not in (2, 3):
        return
    tensors, kvs = w.u64("the tensor count"), w.u64("the metadata count")
    if kvs * 12 > len(data) - w.at:       # a key's length (8) and a value's type (4) at least
        w.fail(f"the metadata ({kvs:,} keys)")
    for i in range(kvs):
        key = w.take(w.u64(f"metadata key {i}"), f"metadata key {i}")
        name = key.decode("utf-8", "replace")
        w.value(w.u32(f"the type of {name}"), f"the value of {name}")
    if tensors * _MIN_TENSOR_INFO > len(data) - w.at:
        w.fail(f"the tensor infos ({tensors:,} tensors)")
