"""ECP5 cost of each decode unit alone (rtl/decode), from Yosys ``synth_ecp5``: no
place-and-route, so LUT/FF/DSP/BRAM counts only, no Fmax.

    python -m boards.decode_units            # markdown table, about a minute per unit
"""

import sys

from amaranth.back import verilog

from rtl.decode.argmax import ArgmaxUnit
from rtl.decode.elementwise import RopeRotator, SaturatingAdd, ScaleUnit
from rtl.decode.exp2 import Exp2Unit
from rtl.decode.rowwise import Int8Quantizer, MergeAlign, NormGain, Relu2Glu, RowRange
from rtl.decode.scalar_unit import ScalarUnit
from rtl.decode.xorshift import Xorshift32

from .cell_stats import synth_cells


def units():
    """(name, parameters, component factory) of every unit, as the device would use it."""
    return [
        ("ScalarUnit", "exp 12, int 48", lambda: ScalarUnit()),
        ("Exp2Unit", "d 32", lambda: Exp2Unit()),
        ("ArgmaxUnit", "32-bit, 64 K", lambda: ArgmaxUnit()),
        ("Xorshift32", "", lambda: Xorshift32()),
        ("ScaleUnit", "x 24 -> Q15.16", lambda: ScaleUnit(frac_bits=16, out_bits=32)),
        ("SaturatingAdd", "32", lambda: SaturatingAdd()),
        ("RopeRotator", "x 18", lambda: RopeRotator(x_bits=18)),
        ("RowRange", "32 -> 17", lambda: RowRange()),
        ("RowRange", "32 -> 17, relu, square", lambda: RowRange(relu=True, square=True)),
        ("Int8Quantizer", "32 -> 17 -> 8", lambda: Int8Quantizer()),
        ("Relu2Glu", "32 -> 32", lambda: Relu2Glu()),
        ("NormGain", "32 -> 16 x 16", lambda: NormGain()),
        ("MergeAlign", "32 -> 16 x 16", lambda: MergeAlign()),
    ]


def unit_cells(factory):
    dut = factory()
    text = verilog.convert(dut, name="unit", ports=None)
    return synth_cells(text, "unit", "ecp5")


def row(cells):
    lut = sum(v for k, v in cells.items() if k.startswith("LUT4"))
    ccu = cells.get("CCU2C", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    dsp = sum(v for k, v in cells.items() if k.startswith(("MULT18X18D", "ALU54B")))
    bram = cells.get("DP16KD", 0)
    dist = sum(v for k, v in cells.items() if k.startswith("TRELLIS_DPR16X4"))
    return lut, ccu, ff, dsp, bram, dist


def main(names=None):
    print("| unit | parameters | LUT4 | CCU2C (carry) | FF | MULT18X18D | DP16KD | DPR16X4 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, params, factory in units():
        if names and name not in names:
            continue
        lut, ccu, ff, dsp, bram, dist = row(unit_cells(factory))
        print(f"| {name} | {params} | {lut} | {ccu} | {ff} | {dsp} | {bram} | {dist} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
