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


def test_a_layer_the_device_holds_already_is_not_sent_again(device, rng):
    """A board keeps its memory between runs of the host: an upload that may reuse it
    (``resident_ok``, as model and resident matvec offload ask) checks the CRC first and
    sends nothing when it matches; different weights at that address are written."""
    w, other = random_trits(rng, 60, 130), random_trits(rng, 60, 130)
    device.upload(w)
    sent = device.link.stats.bytes_sent
    device.clear()
    layer = device.upload(w, resident_ok=True)
    assert device.stats.resident == 1 and device.stats.uploads == 1
    assert device.link.stats.bytes_sent - sent < 64          # one CHECK_WEIGHTS request
    x = random_int8(rng, 130)
    np.testing.assert_array_equal(device.matvec(layer, x), matvec(w, x))
    device.clear()
    layer = device.upload(other, resident_ok=True)           # the CRC differs: written
    assert device.stats.resident == 1 and device.stats.uploads == 2
    np.testing.assert_array_equal(device.matvec(layer, x), matvec(other, x))


def test_version_1_commands_still_run_a_matvec(device, rng):
    w, x = random_trits(rng, 70, 99), random_int8(rng, 99)
    layer = device.upload(w)
    device.load_activations(x)
    np.testing.assert_array_equal(device.run(layer), matvec(w, x))  # MATVEC + READ_RESULTS


def test_stacked_layers_sharing_an_input_are_one_request(device, rng):
    ws = [random_trits(rng, m, 128) for m in (128, 64, 64)]  # q, k, v of the shipped model
    qkv = device.upload(np.vstack(ws))
    for _ in range(3):
        x = random_int8(rng, 128)
        before = device.link.stats.requests
        got = np.split(device.matvec(qkv, x), [128, 192])
        assert device.link.stats.requests == before + 1
        for w, g in zip(ws, got):
            np.testing.assert_array_equal(g, matvec(w, x))


def test_matvec_on_loaded_activations_sends_no_activations(device, rng):
    w1, w2 = random_trits(rng, 30, 200), random_trits(rng, 20, 200)
    l1, l2 = device.upload(w1), device.upload(w2)
    x = random_int8(rng, 200)
    np.testing.assert_array_equal(device.matvec(l1, x), matvec(w1, x))
    sent = device.link.stats.bytes_sent
    np.testing.assert_array_equal(device.matvec(l2, x, loaded=True), matvec(w2, x))
    assert device.link.stats.bytes_sent - sent < 20  # one header-sized request


def test_extremes_through_the_link(device):
    k = CFG.max_k
    w = np.stack([np.full(k, -1), np.full(k, 1), np.zeros(k)]).astype(np.int8)
    layer = device.upload(w)
    x = np.full(k, -128, np.int8)
    assert device.matvec(layer, x).tolist() == [128 * k, -128 * k, 0]  # full result width
    x[1:] = 0
    assert device.matvec(layer, x).tolist() == [128, -128, 0]  # narrowed to 2 bytes on the link


def test_small_frames_send_big_inputs_ahead_and_take_long_replies(rng):
    """max_payload 64: 100 activations do not fit a MATVEC_READ frame, so two
    LOAD_ACTIVATIONS go first; 40 results of 2 bytes make a reply longer than 64."""
    dev = Device.open_sim(CFG, max_payload=64, timeout=2.0)
    try:
        w = random_trits(rng, 40, 100)
        layer, x = dev.upload(w), random_int8(rng, 100)
        before = dev.link.stats.requests
        np.testing.assert_array_equal(dev.matvec(layer, x), matvec(w, x))
        assert dev.link.stats.requests == before + 3
    finally:
        dev.close()


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
        ws = [random_trits(rng, m, 100) for m in (64, 100, 90)]
        single, stacked = dev.upload(ws[0]), dev.upload(np.vstack(ws))
        right, errors = 0, 0
        for i in range(25):
            x = random_int8(rng, 100)
            try:
                if i % 3 == 0:
                    got = [dev.matvec(single, x)]
                elif i % 3 == 1:  # three layers' results in one long reply
                    got = np.split(dev.matvec(stacked, x), [64, 164])
                else:  # on activations loaded before, as streaming does
                    dev.load_activations(x)
                    got = [dev.matvec(single, x, loaded=True)]
            except DeviceError:
                errors += 1
                continue
            for w, g in zip(ws, got):
                np.testing.assert_array_equal(g, matvec(w, x))  # never a wrong answer
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


def test_stack_too_big_for_the_weight_store_streams_one_layer_at_a_time(capsys):
    """The shipped model's gate/up need 1,664 words together, its largest layer 832:
    with 900 words each group member is uploaded and run in turn."""
    import json

    from host.cli import main

    common = ["generate", "--json", "--tokens", "3", "--temperature", "0", "--prompt", "To"]
    assert main(common + ["--backend", "reference"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(common + ["--backend", "sim", "--check", "--weight-words", "900"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["mode"] == "streaming" and sim["token_ids"] == ref["token_ids"]


def test_a_layer_bigger_than_the_weight_store_is_named():
    from types import SimpleNamespace

    from host.matvec_offload import DeviceBackend
    from host.generate import load
    from ternary_core.errors import TernaryError

    small = EngineConfig(rows=4, cols=10, fmt="base3", max_m=1024, max_k=1024, weight_words=800)
    backend = DeviceBackend(SimpleNamespace(config=small))  # refused before any traffic
    with pytest.raises(TernaryError, match=r"layer model\.layers\.0\.mlp\.\w+_proj needs 832 weight "
                                           r"words; the device holds 800 \(--weight-words\)"):
        backend.prepare(load()[0])


def test_layers_sharing_an_input_are_stacked_per_block():
    from types import SimpleNamespace

    from host.matvec_offload import stacks

    def layers(**shapes):
        return {n.replace("__", "."): SimpleNamespace(trits=np.zeros(s, np.int8)) for n, s in shapes.items()}

    blk = dict(l0__self_attn__q_proj=(8, 4), l0__self_attn__k_proj=(4, 4), l0__self_attn__v_proj=(4, 4),
               l0__self_attn__o_proj=(8, 8), l0__mlp__gate_proj=(6, 8), l0__mlp__up_proj=(6, 8),
               l1__mlp__gate_proj=(6, 8), l1__mlp__up_proj=(6, 8), l1__mlp__down_proj=(8, 6))
    assert stacks(layers(**blk), max_m=16) == [
        ("l0.self_attn.q_proj", "l0.self_attn.k_proj", "l0.self_attn.v_proj"), ("l0.self_attn.o_proj",),
        ("l0.mlp.gate_proj", "l0.mlp.up_proj"), ("l1.mlp.gate_proj", "l1.mlp.up_proj"), ("l1.mlp.down_proj",)]
    # rows past max_m, or different K: not stacked
    assert stacks(layers(**blk), max_m=15)[0] == ("l0.self_attn.q_proj",)
    odd = layers(a__mlp__gate_proj=(6, 8), a__mlp__up_proj=(6, 9))
    assert stacks(odd, max_m=64) == [("a.mlp.gate_proj",), ("a.mlp.up_proj",)]


def test_concurrent_users_of_one_board_build_it_once(monkeypatch, tmp_path):
    """Two processes (here threads, each with its own lock file handle) that need the same
    uncached board take turns: one builds, the other waits and finds it built; a binary
    without the finished-build marker (an interrupted link) is rebuilt."""
    import threading
    import time

    import sim.board as board_mod

    monkeypatch.setenv("TERNARY_CACHE", str(tmp_path))
    calls, inside = [], []

    def fake_verilate(exe, folder, binary, *args):
        inside.append(1)
        assert len(inside) == 1, "two builds of one board at once"
        time.sleep(0.3)
        binary.parent.mkdir(exist_ok=True)
        binary.write_text("binary")
        calls.append(folder)
        inside.pop()

    monkeypatch.setattr(board_mod, "_verilate", fake_verilate)
    cfg = EngineConfig(rows=2, cols=8, fmt="2bit", max_m=64, max_k=64, weight_words=64)
    got = []
    threads = [threading.Thread(target=lambda: got.append(board_mod.build_board(cfg))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 2 and got[0] == got[1] and got[0].exists()
    (calls[0] / "built").unlink()                  # as if the first build had been cut off
    assert board_mod.build_board(cfg) == got[0] and len(calls) == 2
