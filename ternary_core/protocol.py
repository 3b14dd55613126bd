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
byte is a :class:`LinkStatus`. A frame the device could not read (bad CRC, length over
``max_payload``) is answered by a NACK frame: ``cmd = 0xFF``, payload ``[status]``.
Every command is idempotent — its effect depends only on its payload — so the host
may resend a request whose response was lost without doing anything twice.

Version 2 adds MATVEC_READ: a matvec with its activations in the request and its
results in the response (which may be longer than ``max_payload``). Layers that share
an input are stacked into one matrix by the host, so they too are one request.

Version 3 is a device that runs the whole decode step (model offload, a vector machine
beside the engine; ``ternary_core/offload/isa.py``): WRITE_MEM / CHECK_MEM / READ_MEM on
the machine's memory spaces and RUN (prompt ids in, generated ids out). Its INFO record
is version 2's followed by the model limits. A device without the machine (the
iCEBreaker build) still reports version 2, and every version 1 and 2 command is
unchanged, so a version-2 host keeps working with it.
"""

import binascii
import struct
import zlib
from dataclasses import astuple, dataclass
from enum import IntEnum

from .errors import TernaryError
from .formats.native import FORMAT_CODES
from .golden import accumulator_bits
from .offload import isa

PROTOCOL_VERSION = 3          # what this host speaks (and a device with the vector machine)
MATVEC_VERSION = 2            # what a matvec-only device reports
SUPPORTED_VERSIONS = (MATVEC_VERSION, PROTOCOL_VERSION)
MAGIC = b"TE"
SYNC = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
RESPONSE_BIT = 0x80
NACK = 0xFF
HEADER_BYTES = 5      # sync, seq, cmd, length (2)
CRC_BYTES = 2
FRAME_CRC = "CRC16_IBM_3740"       # amaranth.lib.crc.catalog name, for the RTL
CHECK_CRC = "CRC32_ISO_HDLC"       # CHECK_WEIGHTS, CHECK_MEM; zlib.crc32 on the host


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
    # version 3 (a device with the vector machine):
    WRITE_MEM = 0x09         # space u8, word_addr u24, words * space bytes  -> status
    CHECK_MEM = 0x0A         # space u8, word_addr u24, words u32            -> status, crc32 u32
    READ_MEM = 0x0B          # space u8, word_addr u24, words u16            -> status, words * space bytes
    RUN = 0x0C               # RUN_REQUEST, n_feed ids u16 -> status, RUN_REPLY, n_new ids u16


class LinkStatus(IntEnum):
    OK = 0
    BAD_CRC = 1            # NACK: the frame's CRC did not match
    BAD_LENGTH = 2         # NACK: length over max_payload; or a command's payload has the wrong size
    UNKNOWN_COMMAND = 3
    OUT_OF_RANGE = 4       # an address, shape or count outside the device's memories
    MODEL_ERROR = 5        # RUN: the machine stopped on an error (RUN_ERROR follows); no ids


class WireRecord:
    """Fields of an :mod:`~.offload.isa` table (``RUN_PARAMS``, ``RUN_RESULT``) placed on
    the link at explicit byte offsets, little-endian: the isa owns each field's width and
    sign, this record only where it sits. The offsets must tile ``0 .. size`` without gaps.
    """

    def __init__(self, table, offsets):
        by_name = {f.name: f for f in table}
        self.offsets = dict(offsets)
        self.fields = tuple(sorted(self.offsets, key=self.offsets.get))   # names, wire order
        fmt, at = "<", 0
        for name in self.fields:
            f = by_name[name]
            if self.offsets[name] != at:
                raise ValueError(f"{name} at byte {self.offsets[name]}, expected {at}")
            code = {8: "b", 16: "h", 32: "i"}[f.bits]
            fmt += code if f.signed else code.upper()
            at += f.bits // 8
        self.isa_fields = {name: by_name[name] for name in self.fields}
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size

    def pack(self, **values):
        missing = set(self.fields) - set(values)
        extra = set(values) - set(self.fields)
        if missing or extra:
            raise TernaryError(f"record fields {sorted(missing)} missing, {sorted(extra)} unknown")
        for name in self.fields:
            f, v = self.isa_fields[name], values[name]
            lo, hi = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (0, (1 << f.bits) - 1)
            if not lo <= v <= hi:
                raise TernaryError(f"{name} = {v} is outside {lo}..{hi}")
        return self.struct.pack(*(values[name] for name in self.fields))

    def unpack(self, data, offset=0):
        """The fields of ``data[offset:]`` as a dict by name."""
        return dict(zip(self.fields, self.struct.unpack_from(data, offset)))


# RUN request arguments: the first ARGS_MAX bytes are latched by the parser, the rest
# read from the frame buffer. ``inv_t`` is the sampler's scalar log2(e)/temperature
# (mantissa u16, exponent s16; ignored when ``greedy``); ``top_k`` 0 keeps every token.
RUN_REQUEST = WireRecord(isa.RUN_PARAMS, {"pos0": 0, "n_feed": 2, "n_new": 4, "top_k": 6,
                                          "state": 8, "inv_t_m": 12, "inv_t_e": 14})
# RUN reply after the status byte (OK): total cycles, final xorshift32 state, then the ids.
RUN_REPLY = WireRecord(isa.RUN_RESULT, {"cycles": 0, "state": 4})
# RUN reply after MODEL_ERROR: the machine's status (isa.MachineStatus), the instruction
# it stopped at and the position; no ids.
RUN_ERROR = WireRecord(isa.RUN_RESULT, {"status": 0, "err_pc": 1, "err_pos": 3})


# Fixed argument bytes at the start of each request's payload; WRITE_WEIGHTS and
# LOAD_ACTIVATIONS are followed by data bytes.
ARG_BYTES = {Cmd.INFO: 0, Cmd.WRITE_WEIGHTS: 4, Cmd.CHECK_WEIGHTS: 8, Cmd.LOAD_ACTIVATIONS: 2,
             Cmd.MATVEC: 8, Cmd.READ_RESULTS: 5, Cmd.RESET: 0, Cmd.MATVEC_READ: 8,
             Cmd.WRITE_MEM: 4, Cmd.CHECK_MEM: 8, Cmd.READ_MEM: 6, Cmd.RUN: RUN_REQUEST.size}
ARGS_MAX = 8   # argument bytes the frame parser latches; RUN reads its other 8 from the buffer
MAX_RESPONSE = 0xFFFF   # a MATVEC_READ response may exceed max_payload, up to this


ID_BYTES = 2   # token ids on the link (u16)
MEM_ADDR_BITS = 24

# INFO reply payload after the status byte. Version 3 appends the model limits:
# ``count u8`` then ``count`` u32 values, the fields of
# :class:`ternary_core.offload.limits.DeviceLimits` in their order (new fields go last, so
# a host reads the ones it knows).
INFO_STRUCT = struct.Struct("<2sBBBBBBBHHIH")
INFO_FIELDS = ("magic", "version", "rows", "cols", "fmt", "acc_bits", "result_bytes",
               "word_bytes", "max_m", "max_k", "weight_words", "max_payload")
LIMIT_STRUCT = struct.Struct("<I")


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
    limits: tuple = ()     # version 3: the model limits' values, in DeviceLimits order

    def pack(self):
        head = INFO_STRUCT.pack(*(getattr(self, f) for f in INFO_FIELDS))
        if self.version < 3:
            return head
        return head + bytes([len(self.limits)]) + b"".join(LIMIT_STRUCT.pack(v) for v in self.limits)

    @classmethod
    def unpack(cls, data):
        data = bytes(data)
        if len(data) < INFO_STRUCT.size:
            raise TernaryError(f"INFO reply has {len(data)} bytes, expected {INFO_STRUCT.size}")
        head = INFO_STRUCT.unpack_from(data)
        version = head[1]
        if version < 3:
            if len(data) != INFO_STRUCT.size:
                raise TernaryError(f"INFO reply has {len(data)} bytes, expected {INFO_STRUCT.size}")
            return cls(*head)
        n = data[INFO_STRUCT.size] if len(data) > INFO_STRUCT.size else -1
        if n < 0 or len(data) != INFO_STRUCT.size + 1 + n * LIMIT_STRUCT.size:
            raise TernaryError(f"INFO reply of version {version} has {len(data)} bytes, which is "
                               f"not its record and its limits")
        at = INFO_STRUCT.size + 1
        limits = tuple(LIMIT_STRUCT.unpack_from(data, at + 4 * i)[0] for i in range(n))
        return cls(*head, limits=limits)

    @property
    def has_vm(self):
        """Whether the device runs the whole decode step (version 3 with limits)."""
        return self.version >= 3 and bool(self.limits)


def info_for(config, max_payload, limits=None):
    """The INFO reply a device built from ``config`` sends; with the vector machine's
    ``limits`` (a DeviceLimits), a version 3 record that carries them."""
    args = (MAGIC, MATVEC_VERSION if limits is None else PROTOCOL_VERSION, config.rows,
            config.cols, FORMAT_CODES[config.fmt], config.acc_bits, config.result_bytes,
            config.word_bytes, config.max_m, config.max_k, config.weight_words, max_payload)
    if limits is None:
        return DeviceInfo(*args)
    return DeviceInfo(*args, limits=tuple(int(v) for v in astuple(limits)))


def result_width(k):
    """Bytes that hold any result of a matvec with ``k`` inputs: the width the host asks
    READ_RESULTS for, so small layers cost fewer link bytes."""
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


def encode_mem(space, word_addr, tail):
    """WRITE_MEM / CHECK_MEM / READ_MEM payload: ``space u8, word_addr u24`` then ``tail``."""
    if not 0 <= space < 256:
        raise TernaryError(f"memory space {space} does not fit a byte")
    if not 0 <= word_addr < 1 << MEM_ADDR_BITS:
        raise TernaryError(f"word address {word_addr} does not fit {MEM_ADDR_BITS} bits")
    return struct.pack("<I", space | word_addr << 8) + bytes(tail)


def encode_run(params, ids):
    """RUN payload for ``params`` (an :class:`~.offload.isa.RunParams`) and the fed
    ``ids``; ``inv_t_m = 0`` is greedy (argmax)."""
    ids = [int(t) for t in ids]
    if len(ids) != params.n_feed:
        raise TernaryError(f"RUN: {len(ids)} ids for n_feed={params.n_feed}")
    for name in ("n_feed", "n_new"):
        if getattr(params, name) < 1:
            raise TernaryError(f"RUN: {name} = {getattr(params, name)} is below 1")
    for t in ids:
        if not 0 <= t < 1 << (8 * ID_BYTES):
            raise TernaryError(f"RUN: token id {t} does not fit {ID_BYTES} bytes")
    try:
        head = RUN_REQUEST.pack(**{name: getattr(params, name) for name in RUN_REQUEST.fields})
    except TernaryError as exc:
        raise TernaryError(f"RUN: {exc}") from None
    return head + struct.pack(f"<{len(ids)}H", *ids)


def decode_run(payload):
    """RUN request payload -> (RunParams, ids); TernaryError if malformed."""
    if len(payload) < RUN_REQUEST.size:
        raise TernaryError("RUN payload too short")
    params = isa.RunParams(**RUN_REQUEST.unpack(payload))
    n = params.n_feed
    if len(payload) != RUN_REQUEST.size + ID_BYTES * n:
        raise TernaryError("RUN payload length does not match n_feed")
    return params, list(struct.unpack_from(f"<{n}H", payload, RUN_REQUEST.size))


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
