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


def _faulty_device(tx, rx, seed, timeout=0.25, retries=12):
    from host.transport import SimulatedBoardTransport
    from tests.faulty_transport import FaultyTransport

    inner = SimulatedBoardTransport(CFG)
    ft = FaultyTransport(inner, tx=tx, rx=rx, seed=seed)
    return Device(ft, timeout=timeout, retries=retries), ft


def test_faulty_link_gives_correct_results_or_clear_errors(rng, seed):
    from host.errors import DeviceError
    from tests.faulty_transport import FaultRates

    rates = FaultRates(flip=0.08, drop=0.05, dup=0.05, garbage=0.05, stall=0.03, stall_seconds=0.4)
    dev, ft = _faulty_device(rates, rates, seed)
    try:
        w = random_trits(rng, 64, 200)
        layer = dev.upload(w)
        right, errors = 0, 0
        for _ in range(25):
            x = random_int8(rng, 200)
            try:
                got = dev.matvec(layer, x)
            except DeviceError:
                errors += 1
                continue
            np.testing.assert_array_equal(got, matvec(w, x))  # never a wrong answer
            right += 1
    finally:
        dev.close()
    print(f"faults injected: {ft.injected.counts}; retries {dev.link.stats.retries}, "
          f"nacks {dev.link.stats.nacks}; {right} right, {errors} clear errors")
    assert ft.injected.total() > 10 and dev.link.stats.retries > 0
    assert right >= 20


def test_dead_silent_link_times_out_with_a_clear_error():
    import time

    from host.errors import DeviceMute
    from tests.faulty_transport import FaultRates

    t0 = time.monotonic()
    with pytest.raises(DeviceMute, match="INFO"):
        _faulty_device(FaultRates(), FaultRates(stall=1.0, stall_seconds=60), 1, timeout=0.2, retries=3)
    assert time.monotonic() - t0 < 10
