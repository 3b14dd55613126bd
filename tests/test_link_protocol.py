"""Protocol version 2 on the host side, without a device: result widths from the
input, the MATVEC_READ payload, and the link projection at other UART rates."""

import struct

import numpy as np
import pytest

from ternary_core import protocol as P
from ternary_core.errors import TernaryError
from ternary_core.golden import matvec
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
