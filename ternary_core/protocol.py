"""The link protocol between host and device: every constant and byte layout, defined
once. The RTL (``rtl/``) builds its parser, command engine and framer from these
names; the host (``host/``) encodes and decodes with the functions below.
``docs/protocol.md`` is the prose description of the same thing.

Frame (both directions, all integers little-endian except the CRC)::

    SYNC(0x7E) | seq u8 | cmd u8 | length u16 | payload[length] | crc u16 (big-endian)

Everything after SYNC is byte-stuffed as in HDLC: a byte equal to SYNC (0x7E) or ESC
(0x7D) is sent as ESC followed by the byte XOR 0x20. So SYNC never occurs inside a
frame, and a receiver that sees SYNC always starts a new frame: garbage, a truncated
frame or a corrupted length costs at most that one frame.

``crc`` is CRC-16/IBM-3740 (poly 0x1021, init 0xFFFF; ``binascii.crc_hqx(.., 0xFFFF)``)
over ``seq .. payload``; sent most significant byte first, so the receiver's CRC
register over ``seq .. crc`` ends at the residue 0.

A response carries the request's ``seq``, ``cmd | 0x80``, and a payload whose first
byte is a :class:`Status`. A frame the device could not read (bad CRC, length over
``max_payload``) is answered by a NACK frame: ``cmd = 0xFF``, payload ``[status]``.
Every command is idempotent — its effect depends only on its payload — so the host
may resend a request whose response was lost without doing anything twice.

Version 2 adds MATVEC_READ: a matvec with its activations in the request and its
results in the response (which may be longer than ``max_payload``). Layers that share
an input are stacked into one matrix by the host, so they too are one request.
"""

import binascii
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from .errors import TernaryError

PROTOCOL_VERSION = 2
MAGIC = b"TE"
SYNC = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
RESPONSE_BIT = 0x80
NACK = 0xFF
HEADER_BYTES = 5      # sync, seq, cmd, length (2)
CRC_BYTES = 2
FRAME_CRC = "CRC16_IBM_3740"       # amaranth.lib.crc.catalog name, for the RTL
CHECK_CRC = "CRC32_ISO_HDLC"       # CHECK_WEIGHTS; zlib.crc32 on the host


class Cmd(IntEnum):
    INFO = 0x01              # -> INFO_LAYOUT
    WRITE_WEIGHTS = 0x02     # word_addr u32, bytes...           -> status
    CHECK_WEIGHTS = 0x03     # word_addr u32, words u32          -> status, crc32 u32
    LOAD_ACTIVATIONS = 0x04  # word_offset u16, int8 bytes...    -> status
    MATVEC = 0x05            # base u32, m u16, k u16            -> status, cycles u32
    READ_RESULTS = 0x06      # offset u16, count u16, width u8   -> status, count * width bytes
    RESET = 0x07             # (none)                            -> status
    MATVEC_READ = 0x08       # base u24, width u8, m u16, k u16, int8 bytes...
    #                          -> status, cycles u32, m * width bytes


class Status(IntEnum):
    OK = 0
    BAD_CRC = 1            # NACK: the frame's CRC did not match
    BAD_LENGTH = 2         # NACK: length over max_payload; or a command's payload has the wrong size
    UNKNOWN_COMMAND = 3
    OUT_OF_RANGE = 4       # an address, shape or count outside the device's memories


# Fixed argument bytes at the start of each request's payload; WRITE_WEIGHTS and
# LOAD_ACTIVATIONS are followed by data bytes.
ARG_BYTES = {Cmd.INFO: 0, Cmd.WRITE_WEIGHTS: 4, Cmd.CHECK_WEIGHTS: 8, Cmd.LOAD_ACTIVATIONS: 2,
             Cmd.MATVEC: 8, Cmd.READ_RESULTS: 5, Cmd.RESET: 0, Cmd.MATVEC_READ: 8}
HAS_DATA = {Cmd.WRITE_WEIGHTS, Cmd.LOAD_ACTIVATIONS, Cmd.MATVEC_READ}
ARGS_MAX = 8
MAX_RESPONSE = 0xFFFF   # a MATVEC_READ response may exceed max_payload, up to this

# INFO reply payload after the status byte.
INFO_STRUCT = struct.Struct("<2sBBBBBBBHHIH")
INFO_FIELDS = ("magic", "version", "rows", "cols", "fmt", "acc_bits", "result_bytes",
               "word_bytes", "max_m", "max_k", "weight_words", "max_payload")


@dataclass(frozen=True)
class DeviceInfo:
    magic: bytes
    version: int
    rows: int
    cols: int
    fmt: int
    acc_bits: int
    result_bytes: int
    word_bytes: int
    max_m: int
    max_k: int
    weight_words: int
    max_payload: int

    def pack(self):
        return INFO_STRUCT.pack(*(getattr(self, f) for f in INFO_FIELDS))

    @classmethod
    def unpack(cls, data):
        if len(data) != INFO_STRUCT.size:
            raise TernaryError(f"INFO reply has {len(data)} bytes, expected {INFO_STRUCT.size}")
        return cls(*INFO_STRUCT.unpack(data))


def info_for(config, max_payload):
    """The INFO reply a device built from ``config`` sends."""
    from .native import FORMAT_CODES

    return DeviceInfo(MAGIC, PROTOCOL_VERSION, config.rows, config.cols, FORMAT_CODES[config.fmt],
                      config.acc_bits, config.result_bytes, config.word_bytes, config.max_m,
                      config.max_k, config.weight_words, max_payload)


def result_width(k):
    """Bytes that hold any result of a matvec with ``k`` inputs: the width the host asks
    READ_RESULTS for, so small layers cost fewer link bytes."""
    from .golden import accumulator_bits

    return -(-accumulator_bits(k) // 8)


def bound_width(x_q):
    """Bytes that hold every result of any ternary matvec with the int8 input ``x_q``:
    ``|W~ . x| <= sum |x|`` for trits, so this bound, taken from the input alone, is
    rigorous — and for real activations far tighter than :func:`result_width` (the
    shipped model's K=256 layer fits 2 bytes, not 3)."""
    import numpy as np

    bound = int(np.abs(np.asarray(x_q, dtype=np.int64)).sum())
    return max(1, -(-(bound.bit_length() + 1) // 8))


def encode_matvec_read(base, width, m, k, activations=b""):
    """MATVEC_READ payload. The activations (int8 bytes, stored from activation 0 on)
    may be left out to use those already loaded."""
    if not 0 <= base < 1 << 24:
        raise TernaryError(f"MATVEC_READ takes a 24-bit base word address, not {base}")
    return struct.pack("<IHH", base | width << 24, m, k) + bytes(activations)


def frame_crc(body):
    return binascii.crc_hqx(bytes(body), 0xFFFF)


def check_crc(data):
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


def stuff(data):
    out = bytearray()
    for b in data:
        if b in (SYNC, ESC):
            out += bytes([ESC, b ^ ESC_XOR])
        else:
            out.append(b)
    return bytes(out)


def encode_frame(seq, cmd, payload=b""):
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise TernaryError(f"payload of {len(payload)} bytes does not fit a frame")
    body = struct.pack("<BBH", seq & 0xFF, cmd & 0xFF, len(payload)) + payload
    return bytes([SYNC]) + stuff(body + struct.pack(">H", frame_crc(body)))


class FrameDecoder:
    """Incremental decoder of frames in a byte stream. Anything that is not a complete
    frame with a good CRC is skipped (and counted in ``skipped``); a SYNC always starts
    a new frame. ``feed(bytes)`` returns the ``(seq, cmd, payload)`` frames completed."""

    def __init__(self, max_payload=0xFFFF):
        self.max_payload = max_payload
        self.skipped = 0
        self._body = None   # unstuffed bytes of the frame being read, or None while hunting
        self._esc = False

    def feed(self, data):
        frames = []
        for b in data:
            if b == SYNC:
                if self._body:
                    self.skipped += 1
                self._body, self._esc = bytearray(), False
                continue
            if self._body is None:
                self.skipped += 1
                continue
            if b == ESC:
                self._esc = True
                continue
            if self._esc:
                b ^= ESC_XOR
                self._esc = False
            self._body.append(b)
            frame = self._complete()
            if frame is not None:
                if frame:
                    frames.append(frame)
                else:
                    self.skipped += 1
                self._body = None
        return frames

    def _complete(self):
        """A decoded frame, False for a bad one, None while more bytes are needed."""
        body = self._body
        if len(body) < 4:
            return None
        seq, cmd, length = struct.unpack_from("<BBH", body)
        if length > self.max_payload:
            return False
        if len(body) < 4 + length + CRC_BYTES:
            return None
        (crc,) = struct.unpack_from(">H", body, 4 + length)
        if crc != frame_crc(body[:4 + length]):
            return False
        return seq, cmd, bytes(body[4:4 + length])
