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


STREAMED_ENGINES = {"2x8-2bit": dict(rows=2, cols=8, fmt="2bit"),      # 32-bit tiles: one SDRAM word
                    "4x8-2bit": dict(rows=4, cols=8, fmt="2bit"),      # 64-bit tiles: two
                    "2x10-base3": dict(rows=2, cols=10, fmt="base3")}  # 20 trits in 32 bits


@pytest.mark.parametrize("engine", sorted(STREAMED_ENGINES))
def test_matvec_engine_fed_from_sdram_matches_golden(engine, tmp_path, seed):
    from sim.export import config_to_env, sdram_matvec_verilog
    from ternary_core.engine_config import EngineConfig

    seed = seed % (1 << 31)
    print(f"SDRAM-fed matvec {engine}: TERNARY_TB_SEED={seed}")
    cfg = EngineConfig(**STREAMED_ENGINES[engine], max_m=512, max_k=512, weight_words=16)
    text, geometry = sdram_matvec_verilog(cfg, rate="1:2", clk_freq=RATES["1:2"])
    env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(geometry)),
           "TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed)}
    run_cocotb(text, "sdram_matvec", "sim.tb_sdram_matvec", tmp_path / "mv", extra_env=env, seed=seed)


@pytest.mark.parametrize("module, rate, size, width", [
    ("MT48LC16M16", "1:1", 32 << 20, 16), ("MT48LC16M16", "1:2", 32 << 20, 32),
    ("AS4C32M16", "1:2", 64 << 20, 32)])
def test_generated_core_states_its_geometry(module, rate, size, width):
    from rtl.sdram.litedram_core import litedram_verilog

    text, ports, g = litedram_verilog(variant="model", module=module, rate=rate, clk_freq=50e6)
    assert g.size_bytes == size and g.data_width == width
    assert (1 << g.address_width) * width // 8 == size     # the port addresses every word
    assert ports["cmd_addr"] == (g.address_width, "i") and ports["rdata_data"] == (width, "o")
    assert "module litedram_sdr" in text and ports["timing_violation"] == (1, "o")


def test_core_parameters_are_checked_before_generation():
    from rtl.sdram.litedram_core import litedram_verilog

    with pytest.raises(ValueError, match="variant must be one of board, model, not 'fpga'"):
        litedram_verilog(variant="fpga")
    with pytest.raises(ValueError, match="SDRAM module must be one of MT48LC16M16, AS4C32M16, not 'X'"):
        litedram_verilog(module="X")
    with pytest.raises(ValueError, match="pins must be given for the board variant, and only for it"):
        LiteDramCore(variant="board")
    with pytest.raises(ValueError, match="rate must be"):
        litedram_verilog(rate="2:1")
