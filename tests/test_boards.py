"""Board builds with the YoWASP toolchain (the iCEBreaker in every run; about 2 minutes)."""

import json

import pytest

from boards.build import timing
from boards.ice40_pll import ice40_pll_params
from boards.program import program
from boards.tops import uart_divisor
from host.cli import main
from boards.profiles import board
from ternary_core.errors import TernaryError


def test_icebreaker_bitstream_meets_timing_with_spram_and_no_dsp(tmp_path, capsys):
    out = tmp_path / "icebreaker"
    assert main(["build", "--board", "icebreaker", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    print(capsys.readouterr().out)
    assert (out / "icebreaker.bin").stat().st_size > 100_000
    # 36 MHz: 12 Mbaud at 3 clocks per bit (boards.profiles)
    assert rep["timing_met"] and rep["fmax_mhz"] >= rep["target_mhz"] == 36
    assert rep["dsp"] == 0 and rep["spram"] == 4 and rep["luts"] <= rep["luts_total"]
    assert rep["engine"] == board("icebreaker").engine.__dict__


def test_pll_settings_are_within_the_datasheet_ranges():
    divr, divf, divq, filt, fout = ice40_pll_params(12e6, 24e6)
    assert fout == 24e6
    assert 533e6 <= 12e6 / (divr + 1) * (divf + 1) <= 1066e6
    with pytest.raises(TernaryError, match="no iCE40 PLL setting"):
        ice40_pll_params(12e6, 300e6)
    assert uart_divisor(24e6, 3_000_000) == 8
    # the iCEBreaker's 24 MHz makes the FT2232H's 8 Mbaud at exactly 3 clocks per bit,
    # and 36 MHz would make its 12 Mbaud
    assert uart_divisor(24e6, 8_000_000) == 3
    assert ice40_pll_params(12e6, 36e6)[-1] == 36e6
    assert uart_divisor(36e6, 12_000_000) == 3
    with pytest.raises(ValueError, match="baud"):
        uart_divisor(25e6, 3_000_000)
    with pytest.raises(ValueError, match="baud"):
        uart_divisor(24e6, 12_000_000)  # 2 clocks per bit: below the receiver's 3


def test_program_without_bitstream_or_programmer_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(TernaryError, match="missing.bin: no such file"):
        program("icebreaker", tmp_path / "missing.bin")
    bit = tmp_path / "x.bin"
    bit.write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TernaryError, match="no programmer found"):
        program("icebreaker", bit)


def test_program_finds_the_bitstream_of_the_build_its_flags_name(tmp_path, monkeypatch, capsys):
    """Without --bitstream, `ternary program` looks where `ternary build` with the same
    --offload/--sdram writes, and says which build command makes it."""
    from host.cli import main as cli

    monkeypatch.chdir(tmp_path)
    for flags, folder in (([], "ulx3s-85f"), (["--offload", "model"], "ulx3s-85f-model"),
                          (["--offload", "model", "--sdram"], "ulx3s-85f-model-sdram")):
        with pytest.raises(TernaryError) as e:
            program("ulx3s-85f", offload="model" if flags else "matvec", sdram="--sdram" in flags)
        assert f"no bitstream at build/{folder}/ulx3s-85f.bit" in str(e.value)
        assert f"`ternary build --board ulx3s-85f{''.join(' ' + f for f in flags)}`" in str(e.value)
    with pytest.raises(TernaryError, match="--sdram: only with --offload model"):
        program("ulx3s-85f", sdram=True)
    with pytest.raises(TernaryError, match="--offload model: the icebreaker has no such build"):
        program("icebreaker", offload="model")
    assert cli(["program", "--board", "ulx3s-85f", "--offload", "model", "--sdram"]) == 2
    assert "no bitstream at build/ulx3s-85f-model-sdram/ulx3s-85f.bit" in capsys.readouterr().err


def test_committed_board_report_is_of_the_shipped_engine():
    from host.projection import REPORTS
    rep = json.loads((REPORTS / "icebreaker.json").read_text())
    assert rep["engine"] == board("icebreaker").engine.__dict__ and rep["timing_met"]


@pytest.mark.slow
def test_ulx3s_85f_bitstream_meets_timing_with_no_dsp(tmp_path):
    """About 5 minutes on 2 cores: run with `pytest -m slow`."""
    out = tmp_path / "ulx3s"
    assert main(["build", "--board", "ulx3s-85f", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (out / "ulx3s-85f.bit").stat().st_size > 100_000
    assert rep["timing_met"] and rep["dsp"] == 0 and rep["bram"] > 0
    assert rep["target_mhz"] == board("ulx3s-85f").clock_hz / 1e6 and rep["rows"] * rep["cols"] >= 256


def test_sdram_probe_pll_makes_every_clock_exactly_from_one_vco():
    from boards.ecp5_pll import pll_dividers

    # the device's 30 MHz on the feedback output; the SDRAM's 100 and the controller's 50
    clki, clkfb, clkop, (fast, ctrl), feedback = pll_dividers(25e6, 30e6, [100e6, 50e6])
    vco = 25e6 * clkfb / clki * clkop
    assert feedback is None and 25e6 * clkfb / clki == 30e6 and 25e6 / clki >= 3.125e6
    assert 400e6 <= vco <= 800e6 and vco / fast == 100e6 and vco / ctrl == 50e6
    # 24 MHz cannot be the feedback (25 / 25 MHz at the phase detector): the first of the
    # others that can be, the controller's 50 MHz, is, and 24 comes from the same 600 MHz VCO
    clki, clkfb, clkop, (ctrl, fast), feedback = pll_dividers(25e6, 24e6, [50e6, 100e6])
    vco = 25e6 * clkfb / clki * ctrl
    assert feedback == 0 and 25e6 * clkfb / clki == 50e6 and 25e6 / clki >= 3.125e6
    assert 400e6 <= vco <= 800e6 and vco / clkop == 24e6 and vco / fast == 100e6
    with pytest.raises(TernaryError, match="no ECP5 PLL setting makes 30 MHz and 100, 49.9 MHz "
                                           "from 25 MHz"):
        pll_dividers(25e6, 30e6, [100e6, 49.9e6])


@pytest.mark.slow
def test_ulx3s_sdram_path_meets_timing_at_half_rate(tmp_path):
    """LiteDRAM's SDR core (board variant) with our burst streams and litex-boards' ULX3S
    clocking: the controller at 50 MHz, the PHY and SDRAM at 100 MHz, the pattern test at
    the device's 30 MHz on a 64-bit port through LiteDRAM's clock-domain crossing. About two
    minutes."""
    from boards.sdram_probe import main as probe

    out = tmp_path / "sdram"
    assert probe(["--rate", "1:2", "--freq", "50", "--user-freq", "30", "--port-bits", "64",
                  "--out", str(out)]) == 0
    rep = json.loads((out / "top.report.json").read_text())
    # nextpnr derives 30.0003 MHz from the PLL (a period of 33.333 ns)
    assert sorted(round(f["constraint"]) for f in rep["fmax"].values()) == [30, 50, 100]
    assert rep["utilization"]["EHXPLLL"]["used"] == 1 and rep["utilization"]["IOLOGIC"]["used"] >= 39


def test_timing_is_met_only_when_every_clock_meets_its_own_constraint():
    # The SDRAM build's report: the device's clock beside the controller's two. The
    # device's Fmax is the one reported; a controller clock short of its constraint fails
    # the build even though every Fmax is above the device's target.
    clocks = {"$glbnet$clocks.clk": {"achieved": 31.0, "constraint": 30.0},
              "$glbnet$clocks.sdram_clk": {"achieved": 65.0, "constraint": 50.0},
              "$glbnet$clocks.sdram2x_clk": {"achieved": 113.0, "constraint": 100.0}}
    assert timing(clocks, 30.0) == {"fmax_mhz": 31.0, "timing_met": True, "clocks": clocks}
    slow_controller = {**clocks, "$glbnet$clocks.sdram_clk": {"achieved": 49.0, "constraint": 50.0}}
    assert timing(slow_controller, 30.0)["timing_met"] is False
    slow_device = {**clocks, "$glbnet$clocks.clk": {"achieved": 29.9, "constraint": 30.0}}
    assert timing(slow_device, 30.0) == {"fmax_mhz": 29.9, "timing_met": False, "clocks": slow_device}
    assert timing({}, 30.0)["timing_met"] is False
    # the message names what missed: the controller's clock, not the device's Fmax above it
    from boards.build import shortfall, summary

    rep = dict(board="ulx3s-85f", rows=16, cols=8, format="2bit", target_mhz=30.0, luts=1,
               luts_total=2, ffs=1, bram=1, bram_total=2, dsp=0, dsp_total=1)
    rep.update(timing(slow_controller, 30.0))
    assert shortfall(rep) == "sdram_clk 49.0 MHz < 50 MHz"
    assert "(target 30: NOT MET: sdram_clk 49.0 MHz < 50 MHz)" in summary(rep)
    rep.update(timing(slow_device, 30.0))
    assert shortfall(rep) == "Fmax 29.9 MHz < 30 MHz"
    rep.update(timing({**slow_device, "$glbnet$clocks.sdram_clk": {"achieved": 49.0, "constraint": 50.0}},
                      30.0))
    assert shortfall(rep) == "Fmax 29.9 MHz < 30 MHz, sdram_clk 49.0 MHz < 50 MHz"


def test_each_build_projects_at_its_own_clock_from_its_own_report():
    # A model streamed from the SDRAM runs on the SDRAM build: its tokens/s are projected
    # at that build's clock, from that build's report, not the on-chip build's
    from host.projection import board_clock, report_path

    p = board("ulx3s-85f")
    for build, target in (("matvec", p.clock_hz), ("model", p.vm_clock_hz),
                          ("model-sdram", p.vm_sdram_clock_hz)):
        clock, source = board_clock(p, build)
        assert clock <= target and (source == "no build report yet"
                                    or source.endswith(report_path(p, build).name)), (build, source)
    assert report_path(p, "model-sdram").name == "ulx3s-85f-model-sdram.json"


def test_sdram_clocks_put_the_device_reset_on_a_global_buffer():
    """SdramClocks drives the ``sync`` reset (every device flip-flop with one) from a
    DCCA, so nextpnr routes it on a global network; the controller's domains keep the
    PLL's lock through the fabric."""
    import re

    from amaranth import Elaboratable, Module, Signal
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from boards.sdram_clocks import SdramClocks

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.clocks = SdramClocks(50e6, "1:2", Signal(), user_freq=24e6)
            a, b = Signal(), Signal()
            m.d.sync += a.eq(~a)
            m.d.sdram += b.eq(~b)
            return m

    il = ULX3S_85F_Platform().prepare(Top(), name="top").files["top.il"]
    clocks = next(mod for mod in il.split("\nmodule ") if "cell \\DCCA" in mod)
    assert clocks.count("cell \\DCCA") == 1
    driven = re.search(r"cell \\DCCA .*?connect \\CLKO \\(\S+)", clocks, re.S).group(1)
    # the net the DCCA drives is the module's output for sync's reset (``rst``), not sdram's
    assert driven == "rst" and re.search(r"wire width 1 output \d+\s+\\rst\n", clocks)
    assert not re.search(r"connect \\sdram_rst \\rst\b", clocks)
