"""cocotb testbench of the device's byte-stream core (parser, command engine, framer).

Config in ``TERNARY_TB_CONFIG``, seed in ``TERNARY_TB_SEED``, byte count in
``TERNARY_TB_NOISE_BYTES``.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.cocotb_streams import StreamSink, StreamSource
from sim.export import config_from_env
from ternary_core import protocol as P

CFG = config_from_env(os.environ["TERNARY_TB_CONFIG"])
SEED = int(os.environ.get("TERNARY_TB_SEED", "1"))
NOISE = int(os.environ.get("TERNARY_TB_NOISE_BYTES", "20000"))
MAX_PAYLOAD = int(os.environ.get("TERNARY_TB_MAX_PAYLOAD", "512"))


async def drain(sink, received):
    while True:
        received.append(await sink.recv(max_cycles=1 << 40))


def noise(rng, n):
    """Random bytes, rich in the protocol's special bytes and in frame-like starts."""
    out = bytearray()
    while len(out) < n:
        kind = rng.random()
        if kind < 0.1:
            out += bytes([P.SYNC, rng.randrange(256), rng.choice(list(P.Cmd)), rng.randrange(256),
                          rng.randrange(3)])
        elif kind < 0.15:
            out += P.encode_frame(rng.randrange(256), rng.randrange(256),
                                  bytes(rng.randrange(256) for _ in range(rng.randrange(12))))[:-1]
        elif kind < 0.2:
            out += bytes([rng.choice([P.SYNC, P.ESC])])
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
    return bytes(out[:n])


@cocotb.test()
async def random_bytes_then_info_still_answers(dut):
    rng = random.Random(SEED)
    dut._log.info(f"seed {SEED}, {NOISE} noise bytes")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    src = StreamSource(dut, "i", dut.clk, stall=0.2, rng=rng)
    sink = StreamSink(dut, "o", dut.clk, stall=0.1, rng=random.Random(SEED + 1))
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    received = []
    cocotb.start_soon(drain(sink, received))
    for b in noise(rng, NOISE):
        await src.send(b)
    # Whatever state the noise left, a SYNC starts the next frame afresh.
    await src.send(P.SYNC)
    before = len(received)
    for b in P.encode_frame(0x5A, P.Cmd.INFO):
        await src.send(b)
    for _ in range(20_000):
        await RisingEdge(dut.clk)
        frames = P.FrameDecoder().feed(bytes(received[before:]))
        if any(f[0] == 0x5A for f in frames):
            break
    frames = P.FrameDecoder().feed(bytes(received[before:]))
    info = [f for f in frames if f[0] == 0x5A and f[1] == P.Cmd.INFO | P.RESPONSE_BIT]
    assert info, f"no INFO reply after the noise (got {frames})"
    assert P.DeviceInfo.unpack(info[0][2][1:]) == P.info_for(CFG, MAX_PAYLOAD)
    dut._log.info(f"{len(received)} response bytes during the noise; INFO answered")
