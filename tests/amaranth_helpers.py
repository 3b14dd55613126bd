"""Amaranth-simulator helpers shared by the RTL unit tests: stream send/receive with
valid/ready handshakes and engine loading, all as ``async`` testbench functions."""

import numpy as np
from amaranth.sim import Simulator


def run(dut, testbench, *, vcd=None, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)  # combinational blocks have no clock domain
    sim.add_testbench(testbench)
    go = (lambda: sim.run_until(deadline)) if deadline else sim.run
    if vcd:
        with sim.write_vcd(vcd):
            go()
    else:
        go()


async def stream_send(ctx, s, payload):
    """Offer one payload on stream ``s`` and wait for the handshake."""
    ctx.set(s.payload, payload)
    ctx.set(s.valid, 1)
    await ctx.tick().until(s.ready)
    ctx.set(s.valid, 0)


async def stream_recv(ctx, s, *, max_cycles=100_000):
    """Accept one payload from stream ``s``."""
    ctx.set(s.ready, 1)
    for _ in range(max_cycles):
        _, _, valid, payload = await ctx.tick().sample(s.valid, s.payload)
        if valid:
            ctx.set(s.ready, 0)
            return payload
    raise TimeoutError("no payload on the stream")


async def write_words(ctx, bus, base, words):
    """Write packed words (uint8 rows of word_bytes) into the engine's weight store."""
    for i, w in enumerate(words):
        ctx.set(bus.addr, base + i)
        ctx.set(bus.wdata, int.from_bytes(bytes(w), "little"))
        ctx.set(bus.wmask, (1 << len(w)) - 1)
        await ctx.tick()
    ctx.set(bus.wmask, 0)


async def write_acts(ctx, port, x, cols):
    padded = np.zeros(-(-len(x) // cols) * cols, dtype=np.int8)
    padded[:len(x)] = x
    for j, chunk in enumerate(padded.reshape(-1, cols)):
        ctx.set(port.addr, j)
        ctx.set(port.data, int.from_bytes(chunk.tobytes(), "little"))
        ctx.set(port.en, (1 << cols) - 1)
        await ctx.tick()
    ctx.set(port.en, 0)


def packed_words(layout, w):
    return layout.pack(w).reshape(-1, layout.word_bytes)


def exchange_bytes(dut, frames, *, gap, cycles):
    """Send each raw byte string to ``dut.i``, ``gap`` cycles apart, while another process
    drains ``dut.o`` (as a UART would) for ``cycles`` cycles; return the decoded frames."""
    from ternary_core import protocol as P

    received = bytearray()

    async def sender(ctx):
        for raw in frames:
            for b in raw:
                await stream_send(ctx, dut.i, b)
            await ctx.tick().repeat(gap)

    async def receiver(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                received.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender)
    sim.add_process(receiver)
    sim.run_until(cycles * 1e-8)
    return P.FrameDecoder().feed(bytes(received))
