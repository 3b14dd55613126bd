"""The SDRAM path alone on the ULX3S-85F: LiteDRAM's SDR core (board variant) and our burst
streams, with a pattern test that writes 4096-word bursts and reads them back, its error
count's low bit on LED 0. A feasibility and timing build, and a bring-up check for a board:

    python -m boards.sdram_probe [--rate 1:2] [--freq 50] [--user-freq 30] [--port-bits 64]
                                 [--out build/ulx3s-sdram-probe]

prints the report (Fmax per clock, resources) and exits 1 if a clock misses its
constraint. The clocking is litex-boards' ``radiona_ulx3s``: the PLL makes the
controller's clock, at half rate one at twice it and in phase with it for the PHY, and the
SDRAM clock phase-shifted (90 degrees of the controller's at full rate, 180 of the fast one
at half rate) through a DDR output. By default the pattern test runs as the device would:
in ``sync`` at ``--user-freq`` (a fourth output of the same PLL, unrelated in phase), the
controller in ``sdram`` (and ``sdram2x``), through LiteDRAM's clock-domain crossing, on a
``--port-bits`` port. ``--user-freq 0`` puts everything in the controller's clock
(``sync``, ``sync2x``), as before the crossing existed.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal
from amaranth.lib import io

from .build import nextpnr_opts
from .sdram_clocks import SDRAM_PINS, SdramClocks
from .yowasp import tool_env


class SdramProbeTop(Elaboratable):
    """The pattern test in ``sync``; the controller there too, or with ``user_freq`` in
    its own domain (:class:`SdramClocks`) with a ``port_bits`` port."""
    BURST = 4096

    def __init__(self, freq, rate, user_freq=None, port_bits=None):
        self.freq, self.rate, self.user_freq, self.port_bits = freq, rate, user_freq, port_bits

    def elaborate(self, platform):
        from rtl.sdram.controller import LiteDramCore, SdramStreams

        m = Module()
        pins = platform.request("sdram", 0, dir={k: "-" for k in SDRAM_PINS})
        m.submodules.clocks = SdramClocks(self.freq, self.rate, pins.clk.io, self.user_freq)
        core = LiteDramCore(variant="board", clk_freq=self.freq, pins=pins, rate=self.rate,
                            controller_domain="sdram" if self.user_freq else "sync",
                            port_data_width=self.port_bits)
        platform.add_file("litedram_sdr.v", core.verilog)
        m.submodules.streams = s = SdramStreams(core)
        addr, reading, errors = Signal(core.geometry.address_width), Signal(), Signal(8)
        # every bit of a word depends on its address, differently in each 32-bit lane
        width = len(s.read_data.payload)
        pattern = Cat(*(Const(0x5A5A5A5A + 0x1234567 * i, 32) ^ addr
                         for i in range(-(-width // 32))))[:width]
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
    ap.add_argument("--user-freq", type=float, default=30.0, help="the pattern test's clock, MHz, "
                    "a domain of its own (default 30, the device's); 0: the controller's")
    ap.add_argument("--port-bits", type=int, choices=(16, 32, 64, 128),
                    help="the port's word (default 64 with --user-freq: the SDRAM's rate at "
                         "30 MHz; the controller's without)")
    ap.add_argument("--out", type=Path, default=Path("build/ulx3s-sdram-probe"))
    args = ap.parse_args(argv)
    controller_bits = 16 * (2 if args.rate == "1:2" else 1)
    if args.port_bits is None:
        args.port_bits = 64 if args.user_freq else controller_bits
    one_domain = not args.user_freq
    if args.port_bits < controller_bits or (one_domain and args.port_bits != controller_bits):
        ap.error(f"--port-bits must be the controller's word ({controller_bits} bits at "
                 f"{args.rate}){' with --user-freq 0' if one_domain else ' or a multiple'}, "
                 f"not {args.port_bits}")
    t0 = time.time()
    top = SdramProbeTop(args.freq * 1e6, args.rate, args.user_freq * 1e6 or None, args.port_bits)
    plan = ULX3S_85F_Platform().prepare(top, name="top",
                                        nextpnr_opts=nextpnr_opts())
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
