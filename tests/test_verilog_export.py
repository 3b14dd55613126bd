"""`ternary verilog`: lint-clean Verilog, and no multiplier after synthesis."""

import re
import subprocess

import pytest

from boards.cell_stats import synth_cells
from host.cli import main
from sim.export import engine_verilog
from sim.toolchain import use_verilator
from ternary_core.engine_config import EngineConfig

# Warnings that -Wall adds on any Amaranth output, all harmless: the aliases Amaranth
# emits for every struct field and array element (UNUSEDSIGNAL), its reset-value
# initialisers (PROCASSINIT), and a file name that is not the module name
# (DECLFILENAME). Width warnings are switched off in the file header (sim/export.py).
AMARANTH_WALL_WARNINGS = {"UNUSEDSIGNAL", "PROCASSINIT", "DECLFILENAME"}


@pytest.fixture(scope="module")
def engine_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "engine.v"
    assert main(["verilog", "--rows", "4", "--cols", "10", "--format", "base3", "-o", str(path)]) == 0
    return path


def _lint(path, *flags):
    exe = use_verilator()
    return subprocess.run([str(exe), "--lint-only", *flags, str(path)], capture_output=True, text=True)


def test_verilog_passes_verilator_lint(engine_v):
    proc = _lint(engine_v)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


def test_verilog_wall_warnings_are_only_the_documented_amaranth_ones(engine_v):
    proc = _lint(engine_v, "-Wall")
    kinds = set(re.findall(r"%Warning-([A-Z]+):", proc.stderr))
    assert kinds <= AMARANTH_WALL_WARNINGS, kinds - AMARANTH_WALL_WARNINGS
    assert "%Error:" not in proc.stderr.replace("%Error: Exiting due to", "")


def test_verilog_rejects_bad_parameters(capsys):
    assert main(["verilog", "--rows", "4", "--cols", "8", "--format", "base3", "-o", "x.v"]) == 2
    assert "multiple of 5" in capsys.readouterr().err


@pytest.mark.parametrize("fmt, cols", [("2bit", 8), ("base3", 10)])
def test_engine_has_no_multiplier_after_ice40_synthesis(fmt, cols):
    # the iCEBreaker's pipeline: with the fetch register the activation buffer asks for LUT RAM,
    # which an iCE40 does not have
    cfg = EngineConfig(rows=4, cols=cols, fmt=fmt, max_m=256, max_k=256, weight_words=256,
                       fetch_register=False, result_slots=2)
    cells = synth_cells(engine_verilog(cfg), "ternary_engine", "ice40")
    assert cells.get("SB_LUT4", 0) > 500          # it did synthesize the datapath
    assert cells.get("SB_MAC16", 0) == 0, cells    # -dsp was on: any multiply would be here
