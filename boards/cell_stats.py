"""Cell counts of a design after synthesis (Yosys ``stat -json``)."""

import json
import tempfile
from pathlib import Path

from .yowasp import run_yosys

SYNTH = {"ice40": "synth_ice40 -dsp -top {top}", "ecp5": "synth_ecp5 -top {top}",
         "generic": "synth -top {top}"}


def synth_cells(verilog_text, top, family="ice40"):
    """Synthesize ``verilog_text`` for ``family``; return ``{cell_type: count}``.

    For iCE40, ``-dsp`` lets Yosys map any multiplier to SB_MAC16, so a count of 0
    SB_MAC16 shows the design has no multiplier at all.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "design.v"
        src.write_text(verilog_text)
        run_yosys(f"read_verilog {src.name}; {SYNTH[family].format(top=top)}; "
                  f"tee -q -o stat.json stat -json", tmp)
        stat = json.loads((Path(tmp) / "stat.json").read_text())
    return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}


def lut_count(cells):
    return sum(v for k, v in cells.items() if k.startswith(("SB_LUT4", "LUT4", "$lut")))
