"""The host driving the simulated board (Verilator): uploads, matvecs, errors, faults."""

import numpy as np
import pytest

from host.device import Device
from host.errors import DeviceRejected, LinkClosed
from ternary_core.engine_config import EngineConfig
from ternary_core.golden import matvec
from tests.helpers import random_int8, random_trits

CFG = EngineConfig(rows=4, cols=10, fmt="base3", max_m=256, max_k=256, weight_words=1024)


@pytest.fixture
def device():
    dev = Device.open_sim(CFG, timeout=2.0)
    yield dev
    dev.close()


def test_info_describes_the_built_engine(device):
    assert device.config == CFG
    assert device.info.max_payload == 512


def test_two_layers_uploaded_and_run_match_golden(device, rng):
    w1, w2 = random_trits(rng, 200, 130), random_trits(rng, 37, 256)
    l1, l2 = device.upload(w1), device.upload(w2)
    assert l2.base == l1.words
    for _ in range(3):
        x1, x2 = random_int8(rng, 130), random_int8(rng, 256)
        np.testing.assert_array_equal(device.matvec(l1, x1), matvec(w1, x1))
        np.testing.assert_array_equal(device.matvec(l2, x2), matvec(w2, x2))
    assert device.stats.matvecs == 6 and device.stats.device_cycles > 0
    assert device.link.stats.retries == 0


def test_extremes_through_the_link(device):
    k = CFG.max_k
    w = np.stack([np.full(k, -1), np.full(k, 1), np.zeros(k)]).astype(np.int8)
    layer = device.upload(w)
    x = np.full(k, -128, np.int8)
    assert device.matvec(layer, x).tolist() == [128 * k, -128 * k, 0]


def test_out_of_range_request_is_rejected_not_hung(device):
    from host.device import Layer
    with pytest.raises(DeviceRejected, match="OUT_OF_RANGE"):
        device.run(Layer(base=5000, m=4, k=4, words=1))


def test_board_killed_mid_session_is_a_clear_error(device, rng):
    layer = device.upload(random_trits(rng, 8, 16))
    device.transport.proc.kill()
    device.transport.proc.wait()
    with pytest.raises(LinkClosed, match="exited"):
        device.matvec(layer, random_int8(rng, 16))
