"""The ECP5's EHXPLLL settings: the dividers that make a clock (or several, from one VCO)
from the board's oscillator."""

from ternary_core.errors import TernaryError

PLL_VCO = (400e6, 800e6)     # the ECP5 EHXPLLL's VCO range
PLL_PFD_MIN = 3.125e6


def pll_dividers(fin, fout, others):
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV, [divider of each of others], feedback)`` making
    ``fout`` on CLKOP and every frequency of ``others`` exactly from one VCO. The feedback
    is CLKOP (``feedback`` None) where the phase detector can compare ``fout`` with the
    input (``fin / CLKI_DIV`` at least 3.125 MHz), else the first of ``others`` it can
    (``feedback`` its index): 24 MHz from 25 needs CLKI_DIV 25, but 50 MHz beside it feeds
    back at 25 MHz. The highest such VCO. Raises ``TernaryError`` if there is none."""
    wanted = [fout, *others]
    for fb, ffb in enumerate(wanted):
        best = None
        for clki in range(1, 129):
            if fin / clki < PLL_PFD_MIN:
                break
            for clkfb in range(1, 129):
                if fin * clkfb / clki != ffb:
                    continue
                for div in range(1, 129):
                    vco = ffb * div
                    divs = [vco / f for f in wanted]
                    exact = all(d == int(d) and 1 <= d <= 128 for d in divs)
                    if PLL_VCO[0] <= vco <= PLL_VCO[1] and exact and (best is None or vco > best[0]):
                        best = (vco, clki, clkfb, [int(d) for d in divs])
        if best is not None:
            _, clki, clkfb, (clkop, *divs) = best
            return clki, clkfb, clkop, divs, (None if fb == 0 else fb - 1)
    rest = ", ".join(f"{f / 1e6:g}" for f in others)
    raise TernaryError(f"no ECP5 PLL setting makes {fout / 1e6:g} MHz and {rest} MHz from "
                       f"{fin / 1e6:g} MHz")


def ecp5_pll_params(fin_hz, fout_hz):
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV)`` making ``fout`` exactly or as near as can be."""
    best = None
    for clki in range(1, 129):
        if fin_hz / clki < 3.125e6:
            break
        for clkfb in range(1, 81):
            f = fin_hz * clkfb / clki
            for clkop in range(1, 129):
                if 400e6 <= f * clkop <= 800e6:
                    err = abs(f - fout_hz)
                    if best is None or err < best[0]:
                        best = (err, clki, clkfb, clkop)
                    break
    if best is None or best[0] > 0.01 * fout_hz:
        raise TernaryError(f"--freq: no ECP5 PLL setting makes {fout_hz / 1e6:g} MHz from "
                           f"{fin_hz / 1e6:g} MHz")
    return best[1:]
