"""One small top per board: clock, reset, UART pins, and the device top."""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io

from rtl.device import DeviceTop

from .ice40_pll import ice40_pll_params


def uart_divisor(clock_hz, baud):
    div = round(clock_hz / baud)
    if div < 4 or abs(clock_hz / div - baud) > 0.02 * baud:
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock cannot make {baud} baud within 2% "
                         f"(divisor {div})")
    return div


class ICEBreakerTop(Elaboratable):
    """iCEBreaker: SB_PLL40_PAD from the 12 MHz oscillator, the FT2232H's second channel
    as the UART, weights in the four SPRAMs. Reset is held until the PLL locks."""

    def __init__(self, config, clock_hz, baud):
        self.config, self.clock_hz, self.baud = config, clock_hz, baud
        self.divr, self.divf, self.divq, self.filter, self.achieved_hz = ice40_pll_params(12e6, clock_hz)
        self.divisor = uart_divisor(self.achieved_hz, baud)

    def elaborate(self, platform):
        m = Module()
        clk_pin = platform.request(platform.default_clk, dir="-")
        m.domains.sync = ClockDomain("sync")
        locked, clk = Signal(), Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=self.divr, p_DIVF=self.divf,
            p_DIVQ=self.divq, p_FILTER_RANGE=self.filter, i_PACKAGEPIN=clk_pin.io,
            i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(clk)
        platform.add_clock_constraint(clk, self.achieved_hz)
        m.d.comb += ResetSignal("sync").eq(~locked)
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.device = dev = DeviceTop(self.config, divisor=self.divisor,
                                              weight_store="ice40_spram")
        m.d.comb += [dev.rx.eq(rx.i), tx.o.eq(dev.tx)]
        return m
