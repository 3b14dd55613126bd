"""The ULX3S's clocks for the SDRAM (litex-boards' ``radiona_ulx3s`` clocking): the PLL's
outputs for the device, the controller (and its double-rate clock) and the phase-shifted
SDRAM clock through ``ODDRX1F``; the probe (:mod:`.sdram_probe`) and the device's top
(:mod:`.tops`) both use it."""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io

from ternary_core.errors import TernaryError

from .ecp5_pll import ecp5_pll_params, pll_dividers

SDRAM_PINS = ("clk", "clk_en", "cs", "we", "ras", "cas", "ba", "a", "dq", "dqm")


def two_domain_pll(user_freq, freq, rate):
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV, CLKOS3_DIV, CLKOS/CLKOS2_DIV, feedback)`` of
    :class:`SdramClocks` with ``user_freq``: the user's clock on CLKOP, the controller's
    ``freq`` on CLKOS3 and, at half rate, twice it on CLKOS/CLKOS2, all from one VCO. The
    controller's clock is offered first as the feedback where the user's cannot be
    (``feedback`` 0; None: CLKOP); CLKOS is phase-shifted, so it never is. Raises
    ``TernaryError`` where there is no such setting."""
    fast = freq * (2 if rate == "1:2" else 1)
    clki, clkfb, clkop, (ctrl_div, div), fb = pll_dividers(25e6, user_freq, [freq, fast])
    if fb not in (None, 0):
        raise TernaryError(f"no ECP5 PLL setting feeds back {user_freq / 1e6:g} or "
                           f"{freq / 1e6:g} MHz and makes {fast / 1e6:g} MHz")
    return clki, clkfb, clkop, ctrl_div, div, fb


class SdramClocks(Elaboratable):
    """EHXPLLL from the 25 MHz oscillator: the controller's clock at ``freq``, at half rate
    one at twice it in phase with it, and the phase-shifted SDRAM clock on
    ``sdram_clk_pin`` through ``ODDRX1F``. Without ``user_freq`` the controller's domains
    are ``sync`` and ``sync2x``; with it, ``sdram`` and ``sdram2x``, and ``sync`` runs at
    ``user_freq`` (the PLL's feedback output; every output exact from one VCO). Every
    domain's reset is the PLL's lock, so both sides of a crossing are reset together (the
    core synchronizes its resets to its clocks itself)."""

    def __init__(self, freq, rate, sdram_clk_pin, user_freq=None):
        self.freq, self.rate, self.pin, self.user_freq = freq, rate, sdram_clk_pin, user_freq

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request("clk25", dir="-"))
        half = self.rate == "1:2"
        fast = self.freq * (2 if half else 1)
        if self.user_freq:
            clki, clkfb, clkop, ctrl_div, div, fb = two_domain_pll(self.user_freq, self.freq,
                                                                   self.rate)
            ctrl, ctrl2x = "sdram", "sdram2x"
        else:
            clki, clkfb, clkop = ecp5_pll_params(25e6, self.freq)
            div, ctrl_div, fb = clkop // (2 if half else 1), None, None
            ctrl, ctrl2x = "sync", "sync2x"
        # LiteX's ECP5PLL phase: eighths of a VCO period
        phase = round((180 if half else 90) * div / 45)
        locked, clk, clk_ps, clk2x, clk_ctrl = Signal(), Signal(), Signal(), Signal(), Signal()
        # a second domain's clock on CLKOS3, in phase with CLKOS2 (both with no phase shift)
        os3 = {} if ctrl_div is None else dict(
            a_FREQUENCY_PIN_CLKOS3=str(self.freq / 1e6), p_CLKOS3_ENABLE="ENABLED",
            p_CLKOS3_DIV=ctrl_div, p_CLKOS3_CPHASE=ctrl_div - 1, p_CLKOS3_FPHASE=0,
            o_CLKOS3=clk_ctrl)
        m.submodules.pll = Instance(
            "EHXPLLL", **os3,
            a_FREQUENCY_PIN_CLKI="25",
            a_FREQUENCY_PIN_CLKOP=str((self.user_freq or self.freq) / 1e6),
            a_FREQUENCY_PIN_CLKOS=str(fast / 1e6), a_FREQUENCY_PIN_CLKOS2=str(fast / 1e6),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=clkop, p_CLKOP_CPHASE=clkop - 1, p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=div, p_CLKOS_CPHASE=(phase >> 3) + div - 1,
            p_CLKOS_FPHASE=phase & 7,
            p_CLKOS2_ENABLE="ENABLED", p_CLKOS2_DIV=div, p_CLKOS2_CPHASE=div - 1, p_CLKOS2_FPHASE=0,
            # the feedback: CLKOP (the user's clock), or the controller's on CLKOS3 where
            # the user's cannot be compared with the input (pll_dividers)
            p_FEEDBK_PATH="CLKOP" if fb is None else "CLKOS3", p_CLKFB_DIV=clkfb, p_CLKI_DIV=clki,
            i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, o_CLKOP=clk, o_CLKOS=clk_ps, o_CLKOS2=clk2x,
            i_CLKFB=clk if fb is None else clk_ctrl, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        clocks = {"sync": clk}
        if self.user_freq:
            clocks[ctrl] = clk_ctrl
        if half:
            clocks[ctrl2x] = clk2x
        # The reset of ``sync`` (every flip-flop of the device with one) rides a global
        # network through a DCCA, as the clocks do: nextpnr promotes only clocks itself,
        # and the reset routed through the fabric was among the most congested nets of
        # the SDRAM build (router2's heatmap, docs/sdram.md). The controller's domains
        # keep the lock itself: the core synchronizes its resets to its clocks.
        unlocked, sync_rst = Signal(), Signal()
        m.d.comb += unlocked.eq(~locked)
        m.submodules.sync_rst_buf = Instance("DCCA", i_CLKI=unlocked, i_CE=1, o_CLKO=sync_rst)
        for name, sig in clocks.items():
            m.domains += ClockDomain(name)
            m.d.comb += [ClockSignal(name).eq(sig),
                         ResetSignal(name).eq(sync_rst if name == "sync" else unlocked)]
        m.submodules.sdram_clk = Instance("ODDRX1F", i_SCLK=clk_ps, i_RST=0, i_D0=1, i_D1=0,
                                          o_Q=self.pin)
        return m
