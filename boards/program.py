"""``ternary program``: load a bitstream with the usual open programmers."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from ternary_core.errors import TernaryError

PROGRAMMERS = {
    "icebreaker": [("iceprog", ["{bit}"]), ("openFPGALoader", ["-b", "ice40_generic", "{bit}"])],
    "ulx3s-85f": [("openFPGALoader", ["-b", "ulx3s", "{bit}"]), ("fujprog", ["{bit}"])],
}
BITSTREAM = {"icebreaker": "icebreaker.bin", "ulx3s-85f": "ulx3s-85f.bit"}


def check_build_report(bit):
    """Refuse a bitstream whose build report says timing was not met (a board clocked past
    its Fmax can compute wrong results without any error), or whose report describes
    another bitstream. The report is ``report.json`` beside it (``report.failed.json``
    for a ``NAME.failed.EXT`` that `ternary build` kept). No report: nothing to check,
    except that a ``.failed.`` bitstream is refused."""
    failed_name = ".failed." in bit.name
    rep_path = bit.parent / ("report.failed.json" if failed_name else "report.json")
    if not rep_path.is_file():
        if failed_name:
            raise TernaryError(f"--bitstream {bit}: is a build that missed timing (no report beside "
                               f"it to say otherwise); pass --force to program it anyway")
        return None
    try:
        rep = json.loads(rep_path.read_bytes())
        met, sha = rep["timing_met"], rep.get("bitstream_sha256")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TernaryError(f"{rep_path}: not a readable build report ({exc}); "
                           f"pass --force to program without it") from None
    if sha is not None and sha != hashlib.sha256(bit.read_bytes()).hexdigest():
        raise TernaryError(f"--bitstream {bit}: {rep_path} describes another build; rebuild, "
                           f"or pass --force to program it unchecked")
    if met is not True:
        raise TernaryError(f"--bitstream {bit}: its build missed timing (Fmax {rep.get('fmax_mhz')} MHz "
                           f"< target {rep.get('target_mhz')} MHz, {rep_path}); rebuild with a lower "
                           f"--freq, or pass --force")
    return rep


def program(name, bitstream=None, force=False):
    """Load ``bitstream`` (default ``build/NAME/NAME.EXT``) with the first programmer found.

    Raises :class:`TernaryError` if the build report beside the bitstream says timing
    was not met (unless ``force``), or no programmer is installed, or it fails.
    """
    if name not in PROGRAMMERS:
        raise TernaryError(f"no programmer recipe for board {name!r}; known: {', '.join(PROGRAMMERS)}")
    bit = Path(bitstream or Path("build") / name / BITSTREAM[name])
    if not bit.is_file():
        raise TernaryError(f"no bitstream at {bit}: run `ternary build --board {name}` first "
                           f"(or give --bitstream)")
    if not force:
        check_build_report(bit)
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
