"""``ternary program``: load a bitstream with the usual open programmers."""

import shutil
import subprocess
from pathlib import Path

from ternary_core.errors import TernaryError

PROGRAMMERS = {
    "icebreaker": [("iceprog", ["{bit}"]), ("openFPGALoader", ["-b", "ice40_generic", "{bit}"])],
    "ulx3s-85f": [("openFPGALoader", ["-b", "ulx3s", "{bit}"]), ("fujprog", ["{bit}"])],
}
BITSTREAM = {"icebreaker": "icebreaker.bin", "ulx3s-85f": "ulx3s-85f.bit"}


def program(name, bitstream=None):
    if name not in PROGRAMMERS:
        raise TernaryError(f"no programmer recipe for board {name!r}; known: {', '.join(PROGRAMMERS)}")
    bit = Path(bitstream or Path("build") / name / BITSTREAM[name])
    if not bit.is_file():
        raise TernaryError(f"no bitstream at {bit}: run `ternary build --board {name}` first "
                           f"(or give --bitstream)")
    for exe, args in PROGRAMMERS[name]:
        path = shutil.which(exe)
        if not path:
            continue
        cmd = [path] + [a.format(bit=bit) for a in args]
        print("running: " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise TernaryError(f"{exe} failed (is the board plugged in and powered?): {last[0]}")
        return exe
    names = " or ".join(exe for exe, _ in PROGRAMMERS[name])
    raise TernaryError(f"no programmer found for {name}: install {names} "
                       f"(e.g. apt install fpga-icestorm openfpgaloader)")
