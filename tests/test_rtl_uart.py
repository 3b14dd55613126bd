"""The UART receiver (rtl/uart.py): its tolerance to a sender's clock."""

import pytest


@pytest.mark.parametrize("mismatch", [-0.03, -0.02, 0.0, 0.02, 0.03])
def test_uart_rx_at_3_clocks_per_bit_takes_a_sender_off_by_up_to_3_percent(mismatch, rng):
    """8 Mbaud from 24 MHz (the iCEBreaker), or 12 from 36: 3 clocks per bit. The
    sender's bit time is 3 clocks times (1 + mismatch), its first edge at a random
    phase of the clock, and its bytes
    come back to back (no idle time between stop and start bits, the worst case)."""
    from amaranth.sim import Simulator

    from rtl.uart import UartRx

    divisor, clk = 3, 1 / 24e6
    dut = UartRx(divisor)
    assert dut.baud_tolerance > 0.03
    sent = [int(b) for b in rng.integers(0, 256, size=60)] + [0x00, 0xFF, 0x55, 0xAA]
    bit = divisor * clk * (1 + mismatch)
    phase = float(rng.random()) * clk
    got = []

    async def line(ctx):
        await ctx.delay(10 * clk + phase)
        for byte in sent:
            for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.rx, level)
                await ctx.delay(bit)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(int((len(sent) + 2) * 10 * (1 + abs(mismatch)) * divisor) + 40):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(clk)
    sim.add_process(line)
    sim.add_testbench(sink)
    sim.run()
    assert got == sent


def test_uart_rx_tolerance_shrinks_outside_it(rng):
    """The same line 6% slow loses bytes: the sampling budget above is real."""
    from amaranth.sim import Simulator

    from rtl.uart import UartRx

    clk = 1 / 24e6
    dut = UartRx(3)
    sent = [int(b) for b in rng.integers(0, 256, size=30)]
    got = []

    async def line(ctx):
        await ctx.delay(10 * clk)
        for byte in sent:
            for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.rx, level)
                await ctx.delay(3 * clk * 1.06)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(len(sent) * 40):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(clk)
    sim.add_process(line)
    sim.add_testbench(sink)
    sim.run()
    assert got != sent
