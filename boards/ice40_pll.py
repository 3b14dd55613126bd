"""iCE40 PLL settings, found the way ``icepll`` finds them."""

from ternary_core.errors import TernaryError


def ice40_pll_params(fin_hz, fout_hz):
    """``(DIVR, DIVF, DIVQ, FILTER_RANGE, achieved_hz)`` for SB_PLL40 in SIMPLE feedback.

    fout = fin * (DIVF+1) / ((DIVR+1) * 2**DIVQ), with the phase detector at 10-133 MHz
    and the VCO at 533-1066 MHz (iCE40 sysCLOCK PLL guide). The closest setting wins.
    """
    if not 16e6 <= fout_hz <= 275e6:
        raise TernaryError(f"no iCE40 PLL setting makes {fout_hz / 1e6:g} MHz: the PLL output "
                           f"range is 16-275 MHz")
    best = None
    for divr in range(16):
        fpfd = fin_hz / (divr + 1)
        if not 10e6 <= fpfd <= 133e6:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533e6 <= fvco <= 1066e6:
                continue
            for divq in range(1, 7):
                fout = fvco / (1 << divq)
                err = abs(fout - fout_hz)
                if best is None or err < best[0]:
                    best = (err, divr, divf, divq, fout, fpfd)
    if best is None or best[0] > 0.01 * fout_hz:
        raise TernaryError(f"no iCE40 PLL setting makes {fout_hz / 1e6:g} MHz from {fin_hz / 1e6:g} MHz")
    _, divr, divf, divq, fout, fpfd = best
    filter_range = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 133e6, 1e12)) if fpfd < lim) + 1
    return divr, divf, divq, min(filter_range, 7), fout
