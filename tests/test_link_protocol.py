"""The link protocol on the host side, without a device: result widths from the
input, the MATVEC_READ payload, the RUN records' wire layout and the link projection
at other UART rates."""

import struct

import numpy as np
import pytest

from ternary_core import protocol as P
from ternary_core.errors import TernaryError
from ternary_core.golden import matvec
from ternary_core.offload import isa
from ternary_core.offload.isa import RunParams
from tests.helpers import random_int8


@pytest.mark.parametrize("x, width", [
    ([0], 1), ([127], 1), ([-128], 2),               # +128 (weight -1) does not fit a byte
    ([100, 27], 1), ([100, 28], 2),
    ([127] * 258, 2),                                # 32,766 fits int16
    ([-128] * 256, 3),                               # +32,768 (all weights -1) does not
    ([-128] * 255 + [0], 2),                         # 32,640 does
])
def test_bound_width_holds_the_largest_result_of_any_trits(x, width):
    x = np.array(x, np.int8)
    assert P.bound_width(x) == width
    worst = matvec(-np.sign(x.astype(np.int16)).reshape(1, -1).astype(np.int8), x)[0]  # = sum |x|
    lo, hi = -(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1
    assert lo <= worst <= hi and lo <= -worst <= hi


def test_bound_width_is_rigorous_for_random_inputs(rng):
    for _ in range(50):
        x = random_int8(rng, int(rng.integers(1, 600)))
        bound = int(np.abs(x.astype(np.int64)).sum())
        w = P.bound_width(x)
        assert bound < 1 << (8 * w - 1)                        # fits, both signs
        assert w == 1 or bound >= 1 << (8 * (w - 1) - 1)       # and is the narrowest that does


def test_matvec_read_payload_puts_width_in_the_top_byte_of_base():
    payload = P.encode_matvec_read(0x012345, 2, 300, 128, b"\x01\xff")
    assert payload == struct.pack("<IHH", 0x02012345, 300, 128) + b"\x01\xff"
    with pytest.raises(TernaryError, match="24-bit base"):
        P.encode_matvec_read(1 << 24, 2, 1, 1)


def test_projection_at_other_baud_rates():
    from host.projection import at_baud

    bounds = {"compute": 100.0, "memory": 500.0}
    assert at_baud(bounds, 10_000, 3_000_000) == {"baud": 3_000_000, "tokens_per_s_link": 30.0,
                                                 "tokens_per_s": 30.0, "bound": "link"}
    assert at_baud(bounds, 10_000, 12_000_000)["tokens_per_s"] == 100.0   # 120 by link: compute-bound
    assert at_baud(bounds, 10_000, 12_000_000)["bound"] == "compute"


def test_run_request_puts_each_field_at_its_wire_offset():
    params = RunParams(pos0=0x0102, n_feed=2, n_new=0x0506, state=0x0D0C0B0A, inv_t_m=0x0F0E,
                       inv_t_e=-2, top_k=0x0807)
    payload = P.encode_run(params, [0x1234, 0xBEEF])
    # pos0, n_feed, n_new, top_k (u16 each), state u32, inv_t_m u16, inv_t_e s16, then the ids
    assert payload == bytes([0x02, 0x01, 0x02, 0x00, 0x06, 0x05, 0x07, 0x08,
                             0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFE, 0xFF,
                             0x34, 0x12, 0xEF, 0xBE])
    assert P.RUN_REQUEST.size == P.ARG_BYTES[P.Cmd.RUN] == 16
    assert P.decode_run(payload) == (params, [0x1234, 0xBEEF])


def test_run_records_take_their_widths_from_the_isa_tables():
    widths = {f.name: f.bits for f in isa.RUN_PARAMS + isa.RUN_RESULT}
    for record in (P.RUN_REQUEST, P.RUN_REPLY, P.RUN_ERROR):
        ends = [record.offsets[n] + widths[n] // 8 for n in record.fields]
        assert [record.offsets[n] for n in record.fields] == [0] + ends[:-1]
        assert record.size == ends[-1]
    assert set(P.RUN_REQUEST.fields) == {f.name for f in isa.RUN_PARAMS}
    assert P.RUN_ERROR.pack(status=3, err_pc=0x1234, err_pos=0xBEEF) == b"\x03\x34\x12\xEF\xBE"
    assert P.RUN_REPLY.unpack(b"\x01\0\0\0\x02\0\0\0") == {"cycles": 1, "state": 2}


@pytest.mark.parametrize("change, message", [
    ({"pos0": 0x10000}, "RUN: pos0 = 65536 is outside 0..65535"),
    ({"inv_t_e": -0x8001}, "RUN: inv_t_e = -32769 is outside -32768..32767"),
    ({"state": -1}, "RUN: state = -1 is outside 0..4294967295"),
    ({"n_new": 0}, "RUN: n_new = 0 is below 1"),
    ({"n_feed": 3}, "RUN: 2 ids for n_feed=3"),
])
def test_encode_run_names_the_field_out_of_range(change, message):
    fields = {"pos0": 0, "n_feed": 2, "n_new": 1, "state": 0, **change}
    with pytest.raises(TernaryError, match=f"^{message}$"):
        P.encode_run(RunParams(**fields), [1, 2])


def test_run_params_are_built_by_keyword_only():
    with pytest.raises(TypeError):
        RunParams(0, 1, 1, 0)   # the link, the PARAM words and the port order them differently


def test_a_wire_record_with_a_gap_is_refused():
    with pytest.raises(ValueError, match="state at byte 6, expected 4"):
        P.WireRecord(isa.RUN_RESULT, {"cycles": 0, "state": 6})
