"""The device's version 3 commands (WRITE_MEM, CHECK_MEM, READ_MEM, RUN) on byte streams,
against a stand-in vector machine (tests/vm_double.py), in the Amaranth simulator."""

import struct

from rtl.device import DeviceCore
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig
from ternary_core.offload.isa import RunParams
from tests.amaranth_helpers import exchange_bytes
from tests.vm_double import (ERR_PC, ERR_POS, ERROR_CODE, NARROW, READ_ONLY, SPACES, TOKENS, WIDE,
                             DoubleLimits, VmDouble, expected_run)

CFG = EngineConfig(rows=4, cols=10, fmt="base3", max_m=32, max_k=60, weight_words=64)
MAX_PAYLOAD = 64


def exchange(frames, *, gap=300):
    """Send each request, ``gap`` cycles apart, drain the responses; decode them."""
    dut = DeviceCore(CFG, max_payload=MAX_PAYLOAD, timeout=200, vm=VmDouble(DoubleLimits()))
    return run_core(dut, frames, gap)


def run_core(dut, frames, gap=300):
    total = sum(len(f) for f in frames) * 4 + gap * (len(frames) + 2) + 5_000
    return exchange_bytes(dut, frames, gap=gap, cycles=total)


def mem(seq, cmd, space, addr, tail):
    return P.encode_frame(seq, cmd, P.encode_mem(space, addr, tail))


def test_info_of_a_device_with_the_machine_is_version_3_with_its_limits():
    (_, _, payload), = exchange([P.encode_frame(1, P.Cmd.INFO)])
    info = P.DeviceInfo.unpack(payload[1:])
    assert info == P.info_for(CFG, MAX_PAYLOAD, DoubleLimits())
    assert info.version == 3 and info.has_vm and info.limits == (DoubleLimits().context, 300)


def test_words_written_are_read_back_and_crc_checked(rng):
    narrow = bytes(rng.integers(0, 256, 5 * 9, dtype="uint8"))
    wide = bytes(rng.integers(0, 256, 8 * 3, dtype="uint8"))
    replies = exchange([mem(1, P.Cmd.WRITE_MEM, NARROW, 4, narrow),
                        mem(2, P.Cmd.WRITE_MEM, WIDE, 5, wide),
                        mem(3, P.Cmd.READ_MEM, NARROW, 4, struct.pack("<H", 9)),
                        mem(4, P.Cmd.READ_MEM, WIDE, 6, struct.pack("<H", 2)),
                        mem(5, P.Cmd.CHECK_MEM, NARROW, 4, struct.pack("<I", 9)),
                        mem(6, P.Cmd.CHECK_MEM, WIDE, 5, struct.pack("<I", 3))])
    assert [r[0] for r in replies] == [1, 2, 3, 4, 5, 6]
    assert all(r[2][0] == P.LinkStatus.OK for r in replies), replies
    assert replies[2][2][1:] == narrow and replies[3][2][1:] == wide[8:]
    assert replies[4][2][1:] == struct.pack("<I", P.check_crc(narrow))
    assert replies[5][2][1:] == struct.pack("<I", P.check_crc(wide))


def test_bad_memory_requests_are_rejected_by_name():
    depth = SPACES[NARROW][1]
    replies = exchange([mem(1, P.Cmd.WRITE_MEM, 7, 0, bytes(8)),                     # no space 7
                        mem(2, P.Cmd.WRITE_MEM, NARROW, depth, bytes(5)),            # past the end
                        mem(3, P.Cmd.WRITE_MEM, NARROW, 0, bytes(7)),                # half a word
                        mem(4, P.Cmd.READ_MEM, NARROW, depth - 2, struct.pack("<H", 3)),
                        mem(5, P.Cmd.CHECK_MEM, WIDE, 0, struct.pack("<I", 9)),
                        mem(6, P.Cmd.READ_MEM, NARROW, 0, struct.pack("<H", 0)),
                        mem(7, P.Cmd.CHECK_MEM, NARROW, 0, b""),                     # short
                        mem(8, P.Cmd.WRITE_MEM, READ_ONLY, 0, bytes(4)),            # not writable
                        mem(9, P.Cmd.READ_MEM, READ_ONLY, 0, struct.pack("<H", 4)),
                        P.encode_frame(10, P.Cmd.INFO)])
    S = P.LinkStatus
    assert [r[2][0] for r in replies] == [S.OUT_OF_RANGE, S.OUT_OF_RANGE, S.BAD_LENGTH,
                                          S.OUT_OF_RANGE, S.OUT_OF_RANGE, S.OUT_OF_RANGE,
                                          S.BAD_LENGTH, S.OUT_OF_RANGE, S.OK, S.OK]


def run_frame(seq, pos0, ids, n_new, top_k=0, state=0x12345678, inv_t=(0x8001, -3)):
    params = RunParams(pos0=pos0, n_feed=len(ids), n_new=n_new, state=state, inv_t_m=inv_t[0],
                       inv_t_e=inv_t[1], top_k=top_k)
    return P.encode_frame(seq, P.Cmd.RUN, P.encode_run(params, ids))


def test_run_feeds_ids_and_returns_the_generated_ones():
    tokens = {}
    requests = [(0, [5, 6, 7], 4, 2), (6, [100], 3, 0), (2, [9, 8], 1, 9)]
    frames = [run_frame(i + 1, pos0, ids, n, top_k) for i, (pos0, ids, n, top_k) in enumerate(requests)]
    replies = exchange(frames)
    assert [r[0] for r in replies] == [1, 2, 3]
    for (pos0, ids, n_new, top_k), (_, cmd, payload) in zip(requests, replies):
        assert cmd == P.Cmd.RUN | P.RESPONSE_BIT and payload[0] == P.LinkStatus.OK, payload
        tokens.update({pos0 + i: t for i, t in enumerate(ids)})
        err, cycles, state = expected_run(tokens, pos0, len(ids), n_new, top_k, 0x12345678, 0x8001, -3)
        want = [tokens[pos0 + len(ids) + i] for i in range(n_new)]
        assert payload[1:] == struct.pack("<II", cycles, state) + struct.pack(f"<{n_new}H", *want)


def test_a_machine_error_is_a_status_and_its_code_never_ids():
    no_new = P.RUN_REQUEST.pack(pos0=0, n_feed=1, n_new=0, top_k=0, state=0, inv_t_m=0, inv_t_e=0)
    replies = exchange([run_frame(1, 0, [0xFFFF, 3], 2), run_frame(2, 30, [1], 10),
                        P.encode_frame(3, P.Cmd.RUN, no_new + b"\1\0"),
                        P.encode_frame(4, P.Cmd.RUN, bytes(16) + b"\x01")])
    assert replies[0][2] == bytes([P.LinkStatus.MODEL_ERROR]) + P.RUN_ERROR.pack(status=ERROR_CODE, err_pc=ERR_PC,
                                                                                  err_pos=ERR_POS)
    assert replies[1][2] == bytes([P.LinkStatus.OUT_OF_RANGE])   # 30 + 1 + 10 > RUN_END
    assert replies[2][2] == bytes([P.LinkStatus.OUT_OF_RANGE])   # n_new = 0
    assert replies[3][2] == bytes([P.LinkStatus.BAD_LENGTH])


def test_version_2_commands_still_answer_beside_the_machine():
    replies = exchange([P.encode_frame(1, P.Cmd.RESET), P.encode_frame(2, P.Cmd.CHECK_WEIGHTS,
                                                                       struct.pack("<II", 0, 1))])
    assert [r[2][0] for r in replies] == [P.LinkStatus.OK, P.LinkStatus.OK]
    assert replies[0][1] == P.Cmd.RESET | P.RESPONSE_BIT


def test_a_frame_buffer_with_two_cycles_of_read_latency_gives_the_same_replies(rng):
    """The ULX3S's frame buffer may register its output (buf_read_latency 2): the
    engine alone, its frames and buffer served by the testbench with that latency."""
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.sim import Simulator

    from rtl.vm.spaces import VmSpaces
    from rtl.vm_commands import VmCommandEngine
    from tests.vm_double import RUN_END, SPACE_BITS

    data = bytes(rng.integers(0, 256, 5 * 3, dtype="uint8"))
    requests = [(P.Cmd.WRITE_MEM, P.encode_mem(NARROW, 2, data)),
                (P.Cmd.READ_MEM, P.encode_mem(NARROW, 2, struct.pack("<H", 3))),
                (P.Cmd.RUN, P.encode_run(RunParams(pos0=0, n_feed=2, n_new=2, state=7, top_k=1), [5, 6]))]
    m = Module()
    m.submodules.vmc = vmc = VmCommandEngine(VmSpaces(SPACES, TOKENS, RUN_END, SPACE_BITS),
                                             MAX_PAYLOAD, buf_read_latency=2)
    m.submodules.vm = vm = VmDouble(DoubleLimits())
    for name in ("load", "peek_req", "run"):
        wiring.connect(m, getattr(vmc, name), getattr(vm, name))
    for name in ("peek", "done"):
        wiring.connect(m, getattr(vm, name), getattr(vmc, name))
    replies = []

    async def host(ctx):
        for seq, (cmd, payload) in enumerate(requests):
            args = int.from_bytes(payload[:P.ARGS_MAX].ljust(P.ARGS_MAX, b"\0"), "little")
            ctx.set(vmc.frame.payload, {"seq": seq, "cmd": cmd, "length": len(payload), "args": args,
                                        "error": 0})
            ctx.set(vmc.frame.valid, 1)
            ctx.set(vmc.header.ready, 1)
            ctx.set(vmc.payload.ready, 1)
            out, pipe = bytearray(), [0, 0]
            while True:
                await ctx.tick()
                addr = ctx.get(vmc.buf.addr)
                ctx.set(vmc.buf.data, pipe.pop(0))          # two cycles after its address
                pipe.append(payload[addr] if addr < len(payload) else 0)
                if ctx.get(vmc.payload.valid):
                    out.append(ctx.get(vmc.payload.payload))
                if ctx.get(vmc.frame.ready):
                    break
            ctx.set(vmc.frame.valid, 0)
            replies.append(bytes(out))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run_until(2e-4)
    tokens = {0: 5, 1: 6}
    _, cycles, state = expected_run(tokens, 0, 2, 2, 1, 7, 0, 0)
    assert replies == [b"\0", b"\0" + data,
                       b"\0" + struct.pack("<IIHH", cycles, state, tokens[2], tokens[3])]
