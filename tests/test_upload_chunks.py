"""Uploads are written and CRC-checked in chunks: a chunk that does not read back is
written again alone, a device that keeps corrupting one gives one clear error, and a long
upload shows its progress."""

import io
import struct

import numpy as np
import pytest

from host.device import CHECK_CHUNK_BYTES, Device, Layer
from host.errors import DeviceError
from ternary_core import protocol as P
from ternary_core.offload.limits import DeviceLimits
from ternary_core.model.config import BitNetConfig
from tests.python_device import PythonDevice


class LeakyMemory(PythonDevice):
    """A device whose weight memory flips a bit of the first ``faults`` writes that land
    in word ``bad_word`` (a fault between the link's CRC and the memory)."""

    def __init__(self, bad_word, faults, **kw):
        super().__init__(DeviceLimits.for_config(BitNetConfig(hidden_size=32, intermediate_size=32,
                                                              num_hidden_layers=1,
                                                              num_attention_heads=2,
                                                              num_key_value_heads=1)), **kw)
        self.bad_word, self.faults, self.writes = bad_word, faults, []

    def handle(self, cmd, p):
        if cmd == P.Cmd.WRITE_WEIGHTS:
            (addr,) = struct.unpack_from("<I", p)
            n = (len(p) - 4) // self.engine.word_bytes
            self.writes.append((addr, n))
            if self.faults and addr <= self.bad_word < addr + n:
                self.faults -= 1
                at = 4 + (self.bad_word - addr) * self.engine.word_bytes
                p = p[:at] + bytes([p[at] ^ 0x10]) + p[at + 1:]
        return super().handle(cmd, p)


def image(rng, dev):
    wb = dev.config.word_bytes
    words = min(dev.config.weight_words, 3 * CHECK_CHUNK_BYTES // wb + 5)   # 3 chunks and a bit
    return rng.integers(0, 256, words * wb, dtype=np.uint8).tobytes()


def test_a_chunk_that_does_not_read_back_is_written_again_alone(rng):
    mem = LeakyMemory(bad_word=0, faults=1)
    dev = Device(mem)
    data = image(rng, dev)
    wb = dev.config.word_bytes
    mem.bad_word = (len(data) // wb) // 2          # inside a middle chunk
    dev.write_packed(0, data)
    assert dev.check_layer(Layer(0, 0, 0, len(data) // wb)) == P.check_crc(data)
    assert dev.stats.chunk_retries == 1 and dev.stats.uploads == 1
    written = sum(n for _, n in mem.writes) * wb
    print(f"{len(data):,} bytes, {written:,} written ({CHECK_CHUNK_BYTES:,}-byte chunks)")
    assert written == len(data) + CHECK_CHUNK_BYTES     # the image once and the bad chunk again


def test_a_chunk_that_never_reads_back_is_one_clear_error(rng):
    mem = LeakyMemory(bad_word=5, faults=99)
    dev = Device(mem)
    with pytest.raises(DeviceError, match=r"the weights at word 0: words 0\.\.\d+ did not read back "
                                          r"correctly after 3 writes"):
        dev.write_packed(0, image(rng, dev))


def test_an_upload_shows_its_progress_and_what_the_device_held(rng):
    dev = Device(LeakyMemory(bad_word=0, faults=0))
    data = image(rng, dev)
    log = io.StringIO()
    with dev.uploading("a test image", 2 * len(data), 2, log, show_after=0):
        dev.write_packed(0, data, resident_ok=True)
        dev.write_packed(0, data, resident_ok=True)   # held already: counted, not sent
    out = log.getvalue()
    print(out)
    assert out.startswith(f"uploading a test image ({2 * len(data):,} bytes) to the python device")
    assert f"upload: {2 * len(data) / 1e6:,.2f} MB at" in out
    assert "(1 of 2 already on the device, not sent)" in out
    assert dev.on_bytes is None
