"""One small top per board: clock, reset, UART pins, and the device top."""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io

from rtl.device import DeviceTop
from ternary_core.errors import TernaryError

from .ecp5_pll import ecp5_pll_params
from .ice40_pll import ice40_pll_params


def uart_divisor(clock_hz, baud):
    div = round(clock_hz / baud)
    if div < 3 or abs(clock_hz / div - baud) > 0.02 * baud:
        raise TernaryError(f"--freq: a {clock_hz / 1e6:g} MHz clock cannot make {baud} baud "
                           f"within 2% (divisor {div})")
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
        # The base-3 table in block RAM (8 of the 16 left) frees ~400 logic cells, which
        # the fabric needs to route at 36 MHz.
        m.submodules.device = dev = DeviceTop(self.config, divisor=self.divisor,
                                              weight_store="ice40_spram", base3_impl="bram")
        m.d.comb += [dev.rx.eq(rx.i), tx.o.eq(dev.tx)]
        return m


class ULX3STop(Elaboratable):
    """ULX3S (ECP5): EHXPLLL from the 25 MHz oscillator, the FT231X as the UART, weights
    in block RAM (``lib.memory``, mapped to DP16KD); with ``vm_limits``, the vector machine
    that runs the whole decode step beside the engine (model offload).

    The PLL runs with feedback from CLKOP: fout = 25 MHz * CLKFB_DIV / CLKI_DIV, the
    VCO at fout * CLKOP_DIV within 400-800 MHz and the phase detector at >= 3.125 MHz.
    """

    def __init__(self, config, clock_hz, baud, vm_limits=None):
        self.config, self.clock_hz, self.baud = config, clock_hz, baud
        self.vm_limits = vm_limits
        self.sdram = vm_limits is not None and vm_limits.sdram
        if self.sdram:
            from rtl.sdram.device_sdram import CLOCK_HZ, RATE

            from .sdram_clocks import two_domain_pll
            try:
                two_domain_pll(clock_hz, CLOCK_HZ, RATE)     # (what SdramClocks will build)
            except TernaryError as exc:
                raise TernaryError(f"--freq: {exc} (beside the SDRAM controller's clocks; "
                                   f"24 and 30 MHz can be made, for example)") from None
            self.achieved_hz = clock_hz
        else:
            self.clki_div, self.clkfb_div, self.clkop_div = ecp5_pll_params(25e6, clock_hz)
            self.achieved_hz = 25e6 * self.clkfb_div / self.clki_div
        self.divisor = uart_divisor(self.achieved_hz, baud)

    def elaborate(self, platform):
        if self.sdram:
            return self._elaborate_with_sdram(platform)
        m = Module()
        clk_pin = platform.request("clk25", dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pin)
        m.domains.sync = ClockDomain("sync")
        locked, clk = Signal(), Signal()
        mhz = lambda f: str(round(f / 1e6, 3))  # noqa: E731
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=mhz(self.achieved_hz),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=self.clkop_div, p_CLKOP_CPHASE=self.clkop_div // 2 - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=self.clkfb_div, p_CLKI_DIV=self.clki_div,
            i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, o_CLKOP=clk, i_CLKFB=clk, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
            i_ENCLKOP=0, o_LOCK=locked)
        # nextpnr-ecp5 derives the PLL output's constraint from the 25 MHz pin's and the
        # FREQUENCY_PIN_* attributes, so the sync clock needs none of its own here.
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(~locked)]
        rx, tx = _uart(m, platform)
        vm = None
        # Without the machine, one DP16KD per 4 bits of the weight word (4096 x 4): no bank
        # multiplexer after the RAMs, for 100 MHz. With it, block RAM is the scarce
        # resource and the clock lower: a store sized to the model, packed.
        store = "sliced"
        if self.vm_limits is not None:
            from rtl.vm.spaces import VM_WEIGHT_STORE, make_vm
            vm, store = make_vm(self.config, self.vm_limits), VM_WEIGHT_STORE
        m.submodules.device = dev = DeviceTop(self.config, divisor=self.divisor, weight_store=store,
                                              vm=vm)
        m.d.comb += [dev.rx.eq(rx.i), tx.o.eq(dev.tx)]
        return m

    def _elaborate_with_sdram(self, platform):
        """The machine with the SDRAM (``vm_limits.sdram_words``): one PLL makes ``sync``
        at the device's clock, the controller's ``sdram`` and ``sdram2x`` and the SDRAM's
        phase-shifted clock (:class:`boards.sdram_clocks.SdramClocks`, the probe's
        clocking); the core's Verilog is added to the build."""
        from rtl.sdram.device_sdram import CLOCK_HZ, RATE, device_sdram_core
        from rtl.vm.spaces import VM_WEIGHT_STORE, make_vm

        from .sdram_clocks import SDRAM_PINS, SdramClocks

        m = Module()
        pins = platform.request("sdram", 0, dir={k: "-" for k in SDRAM_PINS})
        m.submodules.clocks = SdramClocks(CLOCK_HZ, RATE, pins.clk.io, user_freq=self.clock_hz)
        core = device_sdram_core("board", pins=pins)
        platform.add_file("litedram_sdr.v", core.verilog)
        rx, tx = _uart(m, platform)
        m.submodules.device = dev = DeviceTop(self.config, divisor=self.divisor,
                                              weight_store=VM_WEIGHT_STORE,
                                              vm=make_vm(self.config, self.vm_limits), sdram=core)
        m.d.comb += [dev.rx.eq(rx.i), tx.o.eq(dev.tx)]
        return m


def _uart(m, platform):
    """The board's UART pins as buffers ``(rx, tx)``."""
    uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
    m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
    return rx, tx
