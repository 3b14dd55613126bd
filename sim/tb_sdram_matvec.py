"""cocotb testbench of the matvec engine fed from SDRAM (LiteDRAM and its SDRAM model):
layers written into SDRAM, then multiplied with each layer streamed in one burst; every
result is compared with the golden model, and the cycles of each matvec with the SDRAM
bound (its SDRAM words at one a cycle).

Run from pytest through :mod:`sim.cocotb_run` (tests/test_sdram.py) on
:class:`rtl.sdram.streamed_matvec.SdramMatvec`. ``TERNARY_TB_CONFIG`` is the engine's
config, ``TERNARY_TB_SDRAM`` the SDRAM geometry (JSON), ``TERNARY_TB_SEED`` the seed.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time

from rtl.matvec_engine import result_layout
from rtl.sdram.streamed_matvec import command_layout, sdram_words
from sim.cocotb_streams import StreamSink, StreamSource, field, pack_struct
from sim.export import config_from_env
from rtl.sdram.controller import burst_layout
from sim.tb_matvec import write_acts
from sim.tb_sdram import PEAK, TB, USER_HZ, user_cycles
from ternary_core.golden import matvec

CFG = config_from_env(os.environ["TERNARY_TB_CONFIG"])
GEOM = json.loads(os.environ["TERNARY_TB_SDRAM"])
SEED = int(os.environ.get("TERNARY_TB_SEED", "1"))
RECORD = os.environ.get("TERNARY_TB_RECORD")   # a JSON line per measurement, for `ternary bench --sdram`
AW, DW = GEOM["address_width"], GEOM["data_width"]
CMD = command_layout(AW)
RES = result_layout(CFG.rows, CFG.acc_bits)
COUNT_WIDTH = 24   # SdramMatvec's default


class MatvecTB(TB):
    def __init__(self, dut, rng, stall):
        super().__init__(dut, rng, burst_layout(AW, COUNT_WIDTH), reads=False)
        self.write_req.stall = self.write_data.stall = 0.0
        self.cmd = StreamSource(dut, "cmd", dut.clk, stall=stall, rng=rng)
        self.res = StreamSink(dut, "result", dut.clk, stall=stall, rng=rng)
        dut.acts__en.value = 0

    async def load_acts(self, x):
        await write_acts(self.dut, CFG, x)
        await ClockCycles(self.dut.clk, 3)

    async def results(self, m):
        got = []
        while True:
            raw = await self.res.recv()
            values = raw >> RES["values"].offset
            count = field(RES, raw, "count")
            for i in range(count):
                v = (values >> (i * CFG.acc_bits)) & ((1 << CFG.acc_bits) - 1)
                got.append(v - (1 << CFG.acc_bits) if v >> (CFG.acc_bits - 1) else v)
            if field(RES, raw, "last"):
                return got

    async def matvec(self, addr, w, x):
        await self.load_acts(x)
        m, k = w.shape
        start = get_sim_time("ps")
        await self.cmd.send(pack_struct(CMD, addr=addr, m=m, k=k))
        got = await self.results(m)
        cycles = user_cycles(start)
        want = matvec(w, x, CFG.acc_bits)
        bad = np.nonzero(np.array(got) != want)[0] if len(got) == m else [0]
        assert len(got) == m and not len(bad), \
            f"M={m} K={k} at SDRAM word {addr:#x}: {len(got)} results, first wrong row {bad[0]}"
        return cycles


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def layers_streamed_from_sdram_match_the_golden_model(dut):
    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED)
    tb = MatvecTB(dut, rng, stall=0.2)
    await tb.start()
    shapes = [(1, 1), (CFG.rows + 1, CFG.cols * 3 + 1), (37, 129), (64, 256),
              (int(nrng.integers(1, 200)), int(nrng.integers(1, 300)))]
    layers, addr = [], int(nrng.integers(0, 4000))
    for m, k in shapes:
        w = nrng.integers(-1, 2, size=(m, k)).astype(np.int8)
        words = sdram_words(CFG, w, DW)
        await tb.write(addr, words)
        layers.append((addr, w))
        addr += len(words) + int(nrng.integers(0, 3000))
    for i in range(8):
        a, w = layers[i % len(layers)] if i < len(layers) else rng.choice(layers)
        await tb.matvec(a, w, nrng.integers(-128, 128, size=w.shape[1]).astype(np.int8))
    assert int(dut.timing_violation.value) == 0, "the SDRAM model's timing checker flagged the controller"


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def a_large_layer_streams_near_the_memorys_rate(dut):
    """One large layer, results taken as they come: its SDRAM words a cycle (of the user
    side's clock) against the port's peak, printed for the record."""
    rng = random.Random(SEED + 1)
    nrng = np.random.default_rng(SEED + 1)
    tb = MatvecTB(dut, rng, stall=0.0)
    await tb.start()
    m, k = min(CFG.max_m, 512), min(CFG.max_k, 512)
    w = nrng.integers(-1, 2, size=(m, k)).astype(np.int8)
    words = sdram_words(CFG, w, DW)
    await tb.write(0, words)
    cycles = await tb.matvec(0, w, nrng.integers(-128, 128, size=k).astype(np.int8))
    ratio = len(words) / cycles
    mb_s = ratio * DW / 8 * USER_HZ / 1e6
    if RECORD:
        with open(RECORD, "a") as f:
            f.write(json.dumps({"m": m, "k": k, "sdram_words": len(words), "cycles": cycles,
                                "user_mhz": USER_HZ / 1e6, "port_bits": DW,
                                "mb_per_s": mb_s}) + "\n")
    print(f"SDRAM-fed matvec {m}x{k} on {CFG.rows}x{CFG.cols} {CFG.fmt}, {USER_HZ / 1e6:g} MHz, "
          f"{DW}-bit port: {len(words)} SDRAM words in {cycles:.0f} cycles = {ratio:.3f} words a "
          f"cycle (the port's peak {PEAK:.3f}) = {mb_s:.1f} MB/s")
    assert ratio > 0.5 * PEAK, f"{ratio:.3f} words a cycle, the port's peak {PEAK:.3f}"
    assert int(dut.timing_violation.value) == 0
