"""cocotb testbench of the SDRAM streams (LiteDRAM's controller and its SDRAM model).

Run from pytest through :mod:`sim.cocotb_run` (tests/test_sdram.py) on
:class:`rtl.sdram.controller.SdramStreams` over the ``model`` core. The geometry arrives in
``TERNARY_TB_SDRAM`` (JSON), the seed in ``TERNARY_TB_SEED``. ``TERNARY_TB_EXPECT_VIOLATION``
set to 1 turns the check around: the controller was generated with wrong timings and
the model's timing checker must flag them.

A core whose port is in its own clock domain (the geometry's ``user_domain``) gets two
unrelated clocks: the controller's (``sdram_clk``, at the geometry's ``clk_freq``) and the
user side's (``clk``, at ``TERNARY_TB_USER_HZ``), started at an odd phase to each other,
with the two resets released in an order the seed picks. Cycles and rates are counted in
the user side's clock, the one the consumer sees.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time

from rtl.sdram.controller import burst_layout
from sim.cocotb_streams import StreamSink, StreamSource, pack_struct

GEOM = json.loads(os.environ["TERNARY_TB_SDRAM"])
SEED = int(os.environ.get("TERNARY_TB_SEED", "1"))
EXPECT_VIOLATION = os.environ.get("TERNARY_TB_EXPECT_VIOLATION") == "1"
AW, DW = GEOM["address_width"], GEOM["data_width"]
ROW_WORDS = GEOM["ncols"] * 16 // DW       # port words per SDRAM row (ROW_BANK_COL mapping)
TWO_CLOCKS = GEOM.get("user_domain", False)
USER_HZ = float(os.environ.get("TERNARY_TB_USER_HZ") or GEOM["clk_freq"]) if TWO_CLOCKS else GEOM["clk_freq"]
# periods in even picoseconds (cocotb's clock halves them): 30 MHz is 33,334 ps
PERIOD_PS = 2 * round(1e12 / USER_HZ / 2)          # the user side's clock (``clk``)
SDRAM_PERIOD_PS = 2 * round(1e12 / GEOM["clk_freq"] / 2)
BURST = burst_layout(AW, 16)


# the port's peak in its words a user cycle: one, or less when the controller's words a
# second are fewer than the port's
PEAK = min(1.0, GEOM["clk_freq"] * GEOM["controller_data_width"] / (USER_HZ * DW))


def user_cycles(start_ps):
    return (get_sim_time("ps") - start_ps) / PERIOD_PS


class TB:
    """Clocks, resets and the write streams; the read streams too with ``reads`` (a design
    that reads for itself, such as SdramMatvec, has none)."""

    def __init__(self, dut, rng, burst=BURST, reads=True):
        self.dut, self.rng, self.burst = dut, rng, burst
        self.write_req = StreamSource(dut, "write_req", dut.clk, stall=0.2, rng=rng)
        self.write_data = StreamSource(dut, "write_data", dut.clk, stall=0.1, rng=rng)
        if reads:
            self.read_req = StreamSource(dut, "read_req", dut.clk, stall=0.2, rng=rng)
            self.read_data = StreamSink(dut, "read_data", dut.clk, stall=0.0, rng=rng)
        self.memory = {}

    async def start(self):
        dut = self.dut
        dut.rst.value = 1
        if TWO_CLOCKS:
            dut.sdram_rst.value = 1
            cocotb.start_soon(Clock(dut.sdram_clk, SDRAM_PERIOD_PS, unit="ps").start())
            # an odd phase between the two: the crossing must not depend on the edges' order
            await Timer(self.rng.randrange(1, SDRAM_PERIOD_PS), unit="ps")
        cocotb.start_soon(Clock(dut.clk, PERIOD_PS, unit="ps").start())
        if TWO_CLOCKS:
            resets = [(dut.rst, dut.clk), (dut.sdram_rst, dut.sdram_clk)]
            self.rng.shuffle(resets)
            for rst, clk in resets:
                await ClockCycles(clk, self.rng.randrange(3, 12))
                rst.value = 0
        else:
            await ClockCycles(dut.clk, 4)
            dut.rst.value = 0
        for _ in range(100):
            await ClockCycles(self.dut.clk, 1000)
            if int(self.dut.init_done.value):
                return
        raise AssertionError("the SDRAM core never raised init_done")

    async def write(self, addr, words):
        async def data():
            for w in words:
                await self.write_data.send(w)
        feeder = cocotb.start_soon(data())
        await self.write_req.send(pack_struct(self.burst, addr=addr, count=len(words)))
        await feeder
        for i, w in enumerate(words):
            self.memory[addr + i] = w

    async def read(self, addr, count, stall=0.0):
        self.read_data.stall = stall
        requester = cocotb.start_soon(self.read_req.send(pack_struct(self.burst, addr=addr, count=count)))
        got = [await self.read_data.recv() for _ in range(count)]
        await requester
        return got


def bursts(rng, n, top):
    """Random bursts, some across row and bank boundaries and one at the memory's end."""
    out = [(top - 700, 700), (ROW_WORDS - 3, 9), (4 * ROW_WORDS - 1, 2)]
    for _ in range(n):
        count = rng.choice([1, 2, 3, rng.randrange(1, 64), rng.randrange(64, 1500)])
        out.append((rng.randrange(0, top - count), count))
    return out


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def sdram_bursts_read_back_what_was_written(dut):
    rng = random.Random(SEED)
    tb = TB(dut, rng)
    await tb.start()
    top = 1 << AW
    plan = bursts(rng, 12 if not EXPECT_VIOLATION else 4, top)
    for addr, count in plan:
        # some bursts as fast as the writer takes them: across clock domains a write's
        # command must not reach the controller before its data
        tb.write_req.stall, tb.write_data.stall = rng.choice([(0.2, 0.1), (0.0, 0.0)])
        await tb.write(addr, [rng.randrange(1 << DW) for _ in range(count)])
    if EXPECT_VIOLATION:
        for addr, count in plan:
            await tb.read(addr, count)
        await ClockCycles(dut.clk, 10)
        assert int(dut.timing_violation.value) == 1, \
            "the controller ran with wrong timings and the SDRAM model's checker did not flag it"
        return
    for addr, count in plan + [(a, c) for a, c in bursts(rng, 6, top)]:
        stall = rng.choice([0.0, 0.0, 0.3, 0.8])
        got = await tb.read(addr, count, stall)
        want = [tb.memory.get(addr + i) for i in range(count)]
        for i, (g, w) in enumerate(zip(got, want)):
            if w is not None:
                assert g == w, f"word {addr + i:#x} (burst {addr:#x}+{count}): read {g:#06x}, wrote {w:#06x}"
    assert int(dut.timing_violation.value) == 0, "the SDRAM model's timing checker flagged the controller"


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def sdram_long_read_streams_near_the_peak(dut):
    """A long sequential read with a consumer that always takes: words per cycle, printed
    for the record (the bench reports it); it must stay above half the peak."""
    if EXPECT_VIOLATION:
        return
    rng = random.Random(SEED + 1)
    tb = TB(dut, rng)
    await tb.start()
    count = 16384
    tb.read_data.stall = 0.0
    start = get_sim_time("ps")
    got = await tb.read(rng.randrange(0, (1 << AW) - count), count)
    cycles = user_cycles(start)
    rate = count / cycles
    mb_s = rate * DW / 8 * USER_HZ / 1e6
    clocks = (f"user {USER_HZ / 1e6:g} MHz, controller {GEOM['clk_freq'] / 1e6:g} MHz" if TWO_CLOCKS
              else f"{USER_HZ / 1e6:g} MHz")
    dut._log.info(f"sequential read: {count} words in {cycles:.0f} cycles = {rate:.3f} words/cycle")
    print(f"SDRAM sequential read ({clocks}, {DW}-bit port): {count} words in {cycles:.0f} "
          f"user cycles = {rate:.3f} words/cycle = {mb_s:.1f} MB/s")
    record = os.environ.get("TERNARY_TB_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"words": count, "cycles": cycles, "words_per_cycle": rate,
                                "mb_per_s": mb_s}) + "\n")
    assert len(got) == count
    assert rate > 0.5 * PEAK, f"a long sequential read gives {rate:.3f} words/cycle (peak {PEAK:.3f})"
    assert int(dut.timing_violation.value) == 0
