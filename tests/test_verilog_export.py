"""`ternary verilog`: lint-clean Verilog that every Yosys flow maps, and no multiplier
after synthesis."""

import re
import subprocess
from dataclasses import replace

import pytest

from boards.cell_stats import synth_cells
from host.cli import main
from sim.export import engine_verilog
from sim.toolchain import use_verilator
from boards.profiles import BOARDS
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
    # the iCEBreaker's pipeline (a smaller engine than the defaults, for a faster synthesis)
    cfg = EngineConfig(rows=4, cols=cols, fmt=fmt, max_m=256, max_k=256, weight_words=256,
                       fetch_register=False, result_slots=2)
    cells = synth_cells(engine_verilog(cfg), "ternary_engine", "ice40")
    assert cells.get("SB_LUT4", 0) > 500          # it did synthesize the datapath
    assert cells.get("SB_MAC16", 0) == 0, cells    # -dsp was on: any multiply would be here


def _assert_mapped(cells, flow):
    """Yosys stops at a memory it cannot map; past that, no memory is left unmapped."""
    left = {k: v for k, v in cells.items() if k.startswith("$mem")}
    assert not left, f"{flow}: unmapped memories {left}"


@pytest.fixture(scope="module")
def default_engine_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "e.v"
    assert main(["verilog", "-o", str(path)]) == 0
    return path.read_text()


def test_default_verilog_carries_no_vendor_choice(default_engine_v):
    assert "ram_style" not in default_engine_v and "ram_block" not in default_engine_v


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_default_verilog_maps_on_vendor_flows(default_engine_v, family):
    """`ternary verilog -o e.v`, as a user of another flow gets it (issue #24 item 15: the
    activation buffer was marked for LUT RAM, which synth_ice40 cannot map)."""
    cells = synth_cells(default_engine_v, "ternary_engine", family)
    _assert_mapped(cells, family)
    ram = {"ice40": "SB_RAM40_4K", "ecp5": "DP16KD"}[family]
    assert cells.get(ram, 0) > 0, cells  # the memories went into block RAM


def test_default_pipeline_maps_on_generic_synth(tmp_path):
    """Generic `synth` turns every memory into flip-flops, so the defaults' 4096-word
    store would take it many minutes: the same engine with small memories."""
    path = tmp_path / "e.v"
    assert main(["verilog", "--weight-words", "64", "--max-k", "64", "--max-m", "64", "-o", str(path)]) == 0
    text = path.read_text()
    assert "ram_style" not in text
    _assert_mapped(synth_cells(text, "ternary_engine", "generic"), "generic")


# Each board's engine, once, through its own family's flow: the vendor choices a board
# asks for (the ULX3S's LUT RAM) are its family's to map. The iCEBreaker's with its
# board's SPRAM store and base-3 table (boards/tops.py): its 16,384 words in generic
# block RAM take synth_ice40 minutes. The ULX3S's with its memories 512 words deep (the
# same array, the same kinds of memory): its 4,096-word store took synth_ecp5 2.5
# minutes of the suite, 512 words half a minute.
BOARD_FLOWS = {"icebreaker": ("ice40", dict(weight_store="ice40_spram", base3_impl="bram"), {}),
               "ulx3s-85f": ("ecp5", {}, dict(weight_words=512, max_m=256, max_k=256))}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_engine_verilog_maps_on_its_family(board):
    assert board in BOARD_FLOWS, f"{board}: add its Yosys flow to BOARD_FLOWS"
    family, impl, shallow = BOARD_FLOWS[board]
    cells = synth_cells(engine_verilog(replace(BOARDS[board].engine, **shallow), **impl),
                        "ternary_engine", family)
    _assert_mapped(cells, family)
    if BOARDS[board].engine.act_lutram:  # what it asked for: the buffer in LUT RAM
        assert cells.get("TRELLIS_DPR16X4", 0) > 0, cells
