"""The host's link and Device against scripted fake devices (no simulator needed)."""

import pytest

from host.device import Device
from host.errors import DeviceMute, ProtocolMismatch
from host.transport import Transport
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig


class ScriptedDevice(Transport):
    """Answers each request frame with ``reply(seq, cmd, payload) -> bytes``."""

    name = "scripted device"

    def __init__(self, reply):
        self.reply, self.pending, self.decoder = reply, b"", P.FrameDecoder()

    def write(self, data):
        for seq, cmd, payload in self.decoder.feed(data):
            self.pending += self.reply(seq, cmd, payload)

    def read(self, timeout):
        data, self.pending = self.pending, b""
        return data


def info_reply(version=P.MATVEC_VERSION, magic=P.MAGIC):
    info = P.info_for(EngineConfig(), 512)
    body = P.DeviceInfo(magic, version, *[getattr(info, f) for f in P.INFO_FIELDS[2:]]).pack()
    return lambda seq, cmd, payload: P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([0]) + body)


def test_device_speaking_another_protocol_version_is_named():
    with pytest.raises(ProtocolMismatch, match=f"protocol version 9.*speaks {P.PROTOCOL_VERSION}"):
        Device(ScriptedDevice(info_reply(version=9)), timeout=0.05)


def test_something_else_answering_info_is_a_mismatch():
    with pytest.raises(ProtocolMismatch, match="not as a ternary engine"):
        Device(ScriptedDevice(info_reply(magic=b"XX")), timeout=0.05)


def test_a_device_that_only_nacks_is_mute_after_bounded_retries():
    nacks = []

    def nack(seq, cmd, payload):
        nacks.append(seq)
        return P.encode_frame(seq, P.NACK, bytes([P.LinkStatus.BAD_CRC]))

    with pytest.raises(DeviceMute, match="INFO"):
        Device(ScriptedDevice(nack), timeout=0.05, retries=3)
    assert len(nacks) == 4 and len(set(nacks)) == 1  # the same request, resent


def test_stale_and_duplicated_responses_are_ignored():
    good = info_reply()

    def noisy(seq, cmd, payload):
        stale = P.encode_frame((seq - 1) & 0xFF, cmd | P.RESPONSE_BIT, b"\x00stale")
        return b"\x00garbage" + stale + good(seq, cmd, payload) + good(seq, cmd, payload)

    dev = Device(ScriptedDevice(noisy), timeout=0.05)
    assert dev.config == EngineConfig() and dev.link.stats.retries == 0


def test_a_matvec_reply_of_the_wrong_length_is_a_mismatch_not_a_result():
    import numpy as np

    from host.device import Layer

    info = info_reply()
    sent = []

    def short_results(seq, cmd, payload):
        if cmd == P.Cmd.INFO:
            return info(seq, cmd, payload)
        sent.append(payload)
        return P.encode_frame(seq, cmd | P.RESPONSE_BIT, b"\x00" + bytes(4) + bytes(2 * 3 - 1))

    dev = Device(ScriptedDevice(short_results), timeout=0.05)
    with pytest.raises(ProtocolMismatch, match="MATVEC_READ returned 9 bytes for 3 results of 2 bytes"):
        dev.matvec(Layer(base=7, m=3, k=2, words=1), np.array([100, 100], np.int8))
    assert sent == [P.encode_matvec_read(7, 2, 3, 2, bytes([100, 100]))]  # Σ|x| = 200: 2 bytes


def vm_info_reply(limits=None):
    from ternary_core.offload.limits import DeviceLimits

    body = P.info_for(EngineConfig(), 512, limits or DeviceLimits()).pack()
    return lambda seq, cmd, payload: P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([0]) + body)


def test_a_version_3_device_reports_its_model_limits():
    from host.model_offload import device_limits
    from ternary_core.offload.limits import DeviceLimits

    dev = Device(ScriptedDevice(vm_info_reply()), timeout=0.05)
    assert dev.has_vm and dev.info.version == 3
    assert device_limits(dev.info) == DeviceLimits()


def test_info_with_fewer_limits_than_the_host_knows_is_a_mismatch():
    from host.model_offload import device_limits

    good = vm_info_reply()

    def short(seq, cmd, payload):
        frame = P.FrameDecoder().feed(good(seq, cmd, payload))[0][2]
        body = frame[1:P.INFO_STRUCT.size + 1] + bytes([3]) + frame[P.INFO_STRUCT.size + 2:][:12]
        return P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([0]) + body)

    dev = Device(ScriptedDevice(short), timeout=0.05)
    with pytest.raises(ProtocolMismatch, match="reports 3 model limits; this host needs 14"):
        device_limits(dev.info)


def test_a_device_that_predates_the_features_limit_runs_no_optional_instructions():
    """An older bitstream's INFO stops before ``features`` (14 limits): the host takes it
    as a device without SMUL2 and ATTN, and compiles without them."""
    from dataclasses import replace

    from host.model_offload import device_limits
    from ternary_core.offload.limits import DeviceLimits

    good = vm_info_reply()

    def older(seq, cmd, payload):
        frame = P.FrameDecoder().feed(good(seq, cmd, payload))[0][2]
        body = frame[1:P.INFO_STRUCT.size + 1] + bytes([14]) + frame[P.INFO_STRUCT.size + 2:][:56]
        return P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([0]) + body)

    # 14 limits, features, then issue 20's sdram_words, emb_rows, kv_slots, vmem_single
    assert len(P.info_for(EngineConfig(), 512, DeviceLimits()).limits) == 19
    dev = Device(ScriptedDevice(older), timeout=0.05)
    limits = device_limits(dev.info)
    assert limits == replace(DeviceLimits(), features=0)
    assert limits.compile_options() == {"smul2": False, "fuse_attention": False}
    assert device_limits(Device(ScriptedDevice(good), timeout=0.05).info).compile_options() == \
        {"smul2": True, "fuse_attention": True}


def test_a_run_stopped_by_the_machine_is_rejected_with_its_code_and_no_ids():
    from host.errors import DeviceRejected

    info = vm_info_reply()

    def stops(seq, cmd, payload):
        if cmd == P.Cmd.INFO:
            return info(seq, cmd, payload)
        return P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([P.LinkStatus.MODEL_ERROR]) +
                              P.RUN_ERROR.pack(status=2, err_pc=77, err_pos=5))

    dev = Device(ScriptedDevice(stops), timeout=0.05)
    with pytest.raises(DeviceRejected, match="RUN: MODEL_ERROR") as err:
        dev.run_model(0, [1, 2], 3, state=1)
    assert err.value.status == P.LinkStatus.MODEL_ERROR
    assert P.RUN_ERROR.unpack(err.value.body) == {"status": 2, "err_pc": 77, "err_pos": 5}


def test_a_run_reply_with_too_few_ids_is_a_mismatch_not_tokens():
    info = vm_info_reply()

    def short(seq, cmd, payload):
        if cmd == P.Cmd.INFO:
            return info(seq, cmd, payload)
        return P.encode_frame(seq, cmd | P.RESPONSE_BIT,
                              b"\x00" + P.RUN_REPLY.pack(cycles=9, state=9) + b"\x01\x00")

    dev = Device(ScriptedDevice(short), timeout=0.05)
    with pytest.raises(ProtocolMismatch, match="RUN returned 10 bytes for 2 ids, not 12"):
        dev.run_model(0, [1], 2, state=1)
