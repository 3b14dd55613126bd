"""The device's command path on byte streams (no UART), in the Amaranth simulator."""

import struct
from dataclasses import replace

import numpy as np
import pytest

from rtl.device import DeviceCore
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig
from ternary_core.golden import matvec
from tests.amaranth_helpers import exchange_bytes
from tests.helpers import random_int8, random_trits

CFG = EngineConfig(rows=4, cols=10, fmt="base3", max_m=32, max_k=60, weight_words=64)
# Both pipelines of the memories around the command engine: registered outputs (the
# default, the ULX3S's) and unregistered (the iCEBreaker's).
FETCH_REGISTER = pytest.mark.parametrize("fetch_register", [True, False], ids=["registered", "unregistered"])


def exchange(frames, *, max_payload=64, gap=600, fetch_register=True):
    """Send each raw byte string, ``gap`` cycles apart, while another process drains
    the response bytes (as a UART would); return the decoded response frames."""
    dut = DeviceCore(replace(CFG, fetch_register=fetch_register), max_payload=max_payload, timeout=200)
    total = sum(len(f) for f in frames) * 2 + gap * (len(frames) + 2) + 20_000
    return exchange_bytes(dut, frames, gap=gap, cycles=total)


def test_info_reply_describes_the_engine():
    (seq, cmd, payload), = exchange([P.encode_frame(7, P.Cmd.INFO)])
    assert (seq, cmd, payload[0]) == (7, P.Cmd.INFO | P.RESPONSE_BIT, P.LinkStatus.OK)
    assert P.DeviceInfo.unpack(payload[1:]) == P.info_for(CFG, 64)


def test_bad_crc_gets_a_nack_and_garbage_is_skipped():
    bad = bytearray(P.encode_frame(3, P.Cmd.INFO))
    bad[-1] ^= 0x40
    truncated = P.encode_frame(9, P.Cmd.INFO)[:4]
    replies = exchange([b"\x00\x13garbage\x7d" + bytes(bad), truncated + P.encode_frame(4, P.Cmd.INFO)])
    assert replies[0][1] == P.NACK and replies[0][2] == bytes([P.LinkStatus.BAD_CRC])
    assert replies[-1][0] == 4 and replies[-1][2][0] == P.LinkStatus.OK


@FETCH_REGISTER
def test_upload_check_and_matvec_match_golden(fetch_register, rng):
    m, k = 9, 47
    w, x = random_trits(rng, m, k), random_int8(rng, k)
    packed = CFG.layout.pack(w)
    words = CFG.layout.words(m, k)
    base = 5
    chunk = 6 * CFG.word_bytes  # 48 bytes + 4 of address fit max_payload = 64
    assert packed.size == 120
    reqs = [P.encode_frame(1, P.Cmd.WRITE_WEIGHTS, struct.pack("<I", base) + packed[:chunk].tobytes()),
            P.encode_frame(2, P.Cmd.WRITE_WEIGHTS, struct.pack("<I", base + 6) + packed[chunk:2 * chunk].tobytes()),
            P.encode_frame(2, P.Cmd.WRITE_WEIGHTS, struct.pack("<I", base + 12) + packed[2 * chunk:].tobytes()),
            P.encode_frame(3, P.Cmd.CHECK_WEIGHTS, struct.pack("<II", base, words)),
            P.encode_frame(4, P.Cmd.LOAD_ACTIVATIONS, struct.pack("<H", 0) + x[:30].tobytes()),
            P.encode_frame(5, P.Cmd.LOAD_ACTIVATIONS, struct.pack("<H", 3) + x[30:].tobytes()),
            P.encode_frame(6, P.Cmd.MATVEC, struct.pack("<IHH", base, m, k)),
            P.encode_frame(7, P.Cmd.READ_RESULTS, struct.pack("<HHB", 0, m, CFG.result_bytes)),
            P.encode_frame(8, P.Cmd.READ_RESULTS, struct.pack("<HHB", 2, 3, 1))]
    replies = exchange(reqs, fetch_register=fetch_register)
    assert [r[0] for r in replies] == [1, 2, 2, 3, 4, 5, 6, 7, 8]
    assert all(r[2][0] == P.LinkStatus.OK for r in replies), replies
    assert struct.unpack("<I", replies[3][2][1:])[0] == P.check_crc(packed)
    cycles = struct.unpack("<I", replies[6][2][1:])[0]
    assert 15 <= cycles <= 15 + 8  # 15 tiles plus the pipeline's fill and drain
    rb = CFG.result_bytes
    data = replies[7][2][1:]
    got = [int.from_bytes(data[i * rb:(i + 1) * rb], "little", signed=True) for i in range(m)]
    assert got == matvec(w, x).tolist()
    low = [int.from_bytes(bytes([b]), "little", signed=True) for b in replies[8][2][1:]]
    assert low == [((v + 128) & 0xFF) - 128 for v in got[2:5]]  # the low byte of each, narrowed


@FETCH_REGISTER
def test_errors_out_of_range_bad_length_unknown(fetch_register):
    replies = exchange([P.encode_frame(1, P.Cmd.MATVEC, struct.pack("<IHH", 0, 0, 5)),
                        P.encode_frame(2, P.Cmd.MATVEC, struct.pack("<IH", 0, 5)),
                        P.encode_frame(3, 0x42),
                        P.encode_frame(4, P.Cmd.WRITE_WEIGHTS, struct.pack("<I", 64) + b"\x00"),
                        P.encode_frame(5, P.Cmd.INFO, b"\x00" * 65)], fetch_register=fetch_register)
    codes = [(r[1], r[2][0]) for r in replies]
    S = P.LinkStatus
    assert codes == [(P.Cmd.MATVEC | 0x80, S.OUT_OF_RANGE), (P.Cmd.MATVEC | 0x80, S.BAD_LENGTH),
                     (0x42 | 0x80, S.UNKNOWN_COMMAND), (P.Cmd.WRITE_WEIGHTS | 0x80, S.OUT_OF_RANGE),
                     (P.NACK, S.BAD_LENGTH)]


def _write_layer_frames(seq, base, packed, words_per_frame=7):
    wb = CFG.word_bytes
    return [P.encode_frame(seq, P.Cmd.WRITE_WEIGHTS,
                           struct.pack("<I", base + w0) + packed[w0 * wb:(w0 + words_per_frame) * wb].tobytes())
            for w0 in range(0, packed.size // wb, words_per_frame)]


def _signed(data, width):
    return [int.from_bytes(data[i:i + width], "little", signed=True) for i in range(0, len(data), width)]


@FETCH_REGISTER
def test_matvec_read_takes_activations_and_returns_results_in_one_frame_each(fetch_register, rng):
    k, rb = 50, CFG.result_bytes
    m1, m2 = 32, 13  # 32 = max_m: its reply (5 + 64 bytes) outgrows max_payload
    w1, w2 = random_trits(rng, m1, k), random_trits(rng, m2, k)
    x, x2 = random_int8(rng, k), random_int8(rng, k)
    base2 = CFG.layout.words(m1, k)
    reqs = _write_layer_frames(1, 0, CFG.layout.pack(w1)) + _write_layer_frames(2, base2, CFG.layout.pack(w2))
    reqs += [P.encode_frame(3, P.Cmd.MATVEC_READ, P.encode_matvec_read(0, rb, m1, k, x.tobytes())),
             # without activation bytes it uses those loaded: x, then x2
             P.encode_frame(4, P.Cmd.MATVEC_READ, P.encode_matvec_read(base2, 1, m2, k)),
             P.encode_frame(5, P.Cmd.LOAD_ACTIVATIONS, struct.pack("<H", 0) + x2.tobytes()),
             P.encode_frame(6, P.Cmd.MATVEC_READ, P.encode_matvec_read(base2, rb, m2, k)),
             P.encode_frame(7, P.Cmd.MATVEC, struct.pack("<IHH", base2, m2, k))]  # v1 still works
    replies = exchange(reqs, max_payload=64, fetch_register=fetch_register)
    assert all(r[2][0] == P.LinkStatus.OK for r in replies), replies
    reads = {r[0]: r[2][1:] for r in replies if r[1] == P.Cmd.MATVEC_READ | P.RESPONSE_BIT}
    assert sorted(reads) == [3, 4, 6] and len(reads[3]) == 4 + m1 * rb
    cycles = struct.unpack("<I", reads[3][:4])[0]
    words = CFG.layout.words(m1, k)
    assert words <= cycles <= words + 8  # its tiles plus the pipeline's fill and drain
    assert _signed(reads[3][4:], rb) == matvec(w1, x).tolist()
    assert _signed(reads[4][4:], 1) == [((v + 128) & 0xFF) - 128 for v in matvec(w2, x).tolist()]
    assert _signed(reads[6][4:], rb) == matvec(w2, x2).tolist()
    assert replies[-1][1] == P.Cmd.MATVEC | P.RESPONSE_BIT and len(replies[-1][2]) == 5


def test_matvec_read_rejects_bad_requests_and_keeps_answering():
    k, rb = 10, CFG.result_bytes
    G, S = P.Cmd.MATVEC_READ | P.RESPONSE_BIT, P.LinkStatus
    cases = [(P.encode_matvec_read(0, rb, 4, k)[:7], S.BAD_LENGTH),          # arguments cut short
             (P.encode_matvec_read(0, 0, 4, k), S.OUT_OF_RANGE),             # width 0
             (P.encode_matvec_read(0, rb + 1, 4, k), S.OUT_OF_RANGE),        # wider than a result
             (P.encode_matvec_read(0, rb, 0, k), S.OUT_OF_RANGE),            # m = 0
             (P.encode_matvec_read(0, rb, CFG.max_m + 1, k), S.OUT_OF_RANGE),
             (P.encode_matvec_read(0, rb, 4, CFG.max_k + 1), S.OUT_OF_RANGE),
             (P.encode_matvec_read(CFG.weight_words, rb, 4, k), S.OUT_OF_RANGE),
             (P.encode_matvec_read(0, rb, 4, k, bytes(61)), S.OUT_OF_RANGE),  # past the 60-byte buffer
             (struct.pack("<IHH", 1 << 24, 4, k), S.OUT_OF_RANGE),           # MATVEC: base's top byte set
             (P.encode_matvec_read(0, rb, 4, k, bytes(k)), S.OK)]
    frames = [P.encode_frame(i, P.Cmd.MATVEC if i == 8 else P.Cmd.MATVEC_READ, payload)
              for i, (payload, _) in enumerate(cases)]
    replies = exchange(frames, max_payload=128)  # room for more activations than the buffer holds
    assert [(r[0], r[2][0]) for r in replies] == [(i, want) for i, (_, want) in enumerate(cases)]
    assert all(r[1] == G for i, r in enumerate(replies) if i != 8)
    assert replies[-1][2][5:] == bytes(4 * rb)  # zero activations: zero results


@FETCH_REGISTER
def test_check_weights_rejects_ranges_past_the_store(fetch_register):
    W, S = CFG.weight_words, P.LinkStatus
    cases = [((W - 1, 2), S.OUT_OF_RANGE), ((W, 0), S.OUT_OF_RANGE), ((0, W + 1), S.OUT_OF_RANGE),
             ((1, 0xFFFFFFFF), S.OUT_OF_RANGE), ((0xFFFFFFFF, 1), S.OUT_OF_RANGE),
             ((W - 2, 2), S.OK), ((0, W), S.OK), ((5, 0), S.OK)]
    frames = [P.encode_frame(i, P.Cmd.CHECK_WEIGHTS, struct.pack("<II", *args)) for i, (args, _) in enumerate(cases)]
    replies = exchange(frames, fetch_register=fetch_register, gap=1500)
    assert [(r[0], r[2][0]) for r in replies] == [(i, want) for i, (_, want) in enumerate(cases)]
    assert struct.unpack("<I", replies[-1][2][1:])[0] == P.check_crc(b"")
