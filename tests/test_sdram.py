"""The SDRAM path: LiteDRAM's SDR controller, generated at build time, under Verilator
with LiteDRAM's SDRAM model and its timing checker (cocotb)."""

import dataclasses
import json

import pytest

from amaranth.back import verilog

from rtl.sdram.controller import LiteDramCore, SdramStreams
from sim.cocotb_run import run_cocotb
from sim.export import with_header

# Full rate: controller and SDRAM at 100 MHz, 16-bit port. Half rate: the controller at
# 50 MHz with a 32-bit port, the SDRAM at 100 MHz (two commands' phases a cycle).
RATES = {"1:1": 100e6, "1:2": 50e6}


def _run(tmp_path, seed, rate="1:1", **core_args):
    core = LiteDramCore(variant="model", clk_freq=RATES[rate], rate=rate, **core_args)
    text = with_header(verilog.convert(SdramStreams(core), name="sdram_tb", emit_src=False))
    env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(core.geometry)),
           "TERNARY_TB_SEED": str(seed),
           "TERNARY_TB_EXPECT_VIOLATION": "1" if core_args.get("controller_timings") else "0"}
    run_cocotb(text + core.verilog, "sdram_tb", "sim.tb_sdram", tmp_path / "sdram", extra_env=env, seed=seed)


@pytest.mark.parametrize("rate", sorted(RATES))
def test_sdram_streams_read_back_bursts_within_the_memorys_timing(rate, tmp_path, seed):
    seed = seed % (1 << 31)
    print(f"SDRAM bursts at {rate}: TERNARY_TB_SEED={seed}")
    _run(tmp_path, seed, rate)


def test_sdram_timing_checker_catches_a_controller_with_wrong_timings(tmp_path, seed):
    seed = seed % (1 << 31)
    print(f"SDRAM wrong timings: TERNARY_TB_SEED={seed}")
    _run(tmp_path, seed, controller_timings={"tRP": 1, "tRCD": 1, "tRFC": 1})
