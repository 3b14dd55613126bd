"""The SDRAM path alone on the ULX3S-85F: LiteDRAM's SDR core (board variant) and our burst
streams, with a pattern test that writes 4096-word bursts and reads them back, its error
count's low bit on LED 0. A feasibility and timing build, and a bring-up check for a board:

    python -m boards.sdram_probe [--rate 1:2] [--freq 50] [--out build/ulx3s-sdram-probe]

prints the report (Fmax per clock, resources) and exits 1 if a clock misses its
constraint. The clocking is litex-boards'
``radiona_ulx3s``: the PLL makes ``sync`` (the controller's clock), at half rate
``sync2x`` in phase with it for the PHY, and the SDRAM clock phase-shifted (90 degrees of
``sync`` at full rate, 180 of ``sync2x`` at half rate) through a DDR output.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io

from .tops import ecp5_pll_params
from .yowasp import tool_env

SDRAM_PINS = ("clk", "clk_en", "cs", "we", "ras", "cas", "ba", "a", "dq", "dqm")


class SdramClocks(Elaboratable):
    """EHXPLLL from the 25 MHz oscillator: ``sync`` at ``freq``, ``sync2x`` (half rate),
    and the phase-shifted SDRAM clock on ``sdram_clk_pin`` through ``ODDRX1F``."""

    def __init__(self, freq, rate, sdram_clk_pin):
        self.freq, self.rate, self.pin = freq, rate, sdram_clk_pin

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request("clk25", dir="-"))
        half = self.rate == "1:2"
        fast = self.freq * (2 if half else 1)
        clki, clkfb, clkop = ecp5_pll_params(25e6, self.freq)
        div = clkop // (2 if half else 1)
        # LiteX's ECP5PLL phase: eighths of a VCO period
        phase = round((180 if half else 90) * div / 45)
        locked, clk, clk_ps, clk2x = Signal(), Signal(), Signal(), Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=str(self.freq / 1e6),
            a_FREQUENCY_PIN_CLKOS=str(fast / 1e6), a_FREQUENCY_PIN_CLKOS2=str(fast / 1e6),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=clkop, p_CLKOP_CPHASE=clkop - 1, p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=div, p_CLKOS_CPHASE=(phase >> 3) + div - 1,
            p_CLKOS_FPHASE=phase & 7,
            p_CLKOS2_ENABLE="ENABLED", p_CLKOS2_DIV=div, p_CLKOS2_CPHASE=div - 1, p_CLKOS2_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=clkfb, p_CLKI_DIV=clki,
            i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, o_CLKOP=clk, o_CLKOS=clk_ps, o_CLKOS2=clk2x,
            i_CLKFB=clk, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(~locked)]
        if half:
            m.domains.sync2x = ClockDomain("sync2x")
            m.d.comb += [ClockSignal("sync2x").eq(clk2x), ResetSignal("sync2x").eq(~locked)]
        m.submodules.sdram_clk = Instance("ODDRX1F", i_SCLK=clk_ps, i_RST=0, i_D0=1, i_D1=0,
                                          o_Q=self.pin)
        return m


class SdramProbeTop(Elaboratable):
    BURST = 4096

    def __init__(self, freq, rate):
        self.freq, self.rate = freq, rate

    def elaborate(self, platform):
        from rtl.sdram.controller import LiteDramCore, SdramStreams

        m = Module()
        pins = platform.request("sdram", 0, dir={k: "-" for k in SDRAM_PINS})
        m.submodules.clocks = SdramClocks(self.freq, self.rate, pins.clk.io)
        core = LiteDramCore(variant="board", clk_freq=self.freq, pins=pins, rate=self.rate)
        platform.add_file("litedram_sdr.v", core.verilog)
        m.submodules.streams = s = SdramStreams(core)
        addr, reading, errors = Signal(core.geometry.address_width), Signal(), Signal(8)
        pattern = (addr ^ 0x5A5A5A5A)[:len(s.read_data.payload)]
        m.d.comb += [
            s.write_req.valid.eq(s.init_done & ~reading), s.write_req.payload.addr.eq(addr),
            s.write_req.payload.count.eq(self.BURST),
            s.write_data.valid.eq(1), s.write_data.payload.eq(pattern),
            s.read_req.valid.eq(s.init_done & reading), s.read_req.payload.addr.eq(addr),
            s.read_req.payload.count.eq(self.BURST), s.read_data.ready.eq(1),
        ]
        with m.If(s.write_req.valid & s.write_req.ready):
            m.d.sync += reading.eq(1)
        with m.If(s.read_data.valid & (s.read_data.payload != pattern)):
            m.d.sync += errors.eq(errors + 1)
        with m.If(s.read_req.valid & s.read_req.ready):
            m.d.sync += [reading.eq(0), addr.eq(addr + self.BURST)]
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(errors[0])
        return m


def main(argv=None):
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", choices=("1:1", "1:2"), default="1:2")
    ap.add_argument("--freq", type=float, default=50.0, help="controller clock, MHz (the SDRAM "
                    "runs at twice it with --rate 1:2)")
    ap.add_argument("--out", type=Path, default=Path("build/ulx3s-sdram-probe"))
    args = ap.parse_args(argv)
    t0 = time.time()
    plan = ULX3S_85F_Platform().prepare(SdramProbeTop(args.freq * 1e6, args.rate), name="top",
                                        nextpnr_opts="--report top.report.json --timing-allow-fail --seed 1")
    plan.execute_local(str(args.out), env=tool_env())
    report = json.loads((args.out / "top.report.json").read_text())
    used = {k: v["used"] for k, v in report["utilization"].items() if v["used"]}
    met = True
    for clock, f in report["fmax"].items():
        met &= f["achieved"] >= f["constraint"]
        print(f"{clock}: Fmax {f['achieved']:.1f} MHz (constraint {f['constraint']:g} MHz)")
    print(f"resources: {used}; {time.time() - t0:.0f} s; timing {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
