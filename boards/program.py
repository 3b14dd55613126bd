"""``ternary program``: load a bitstream with the usual open programmers."""

import hashlib
import math
import re
import shutil
import subprocess
from pathlib import Path

from ternary_core.errors import TernaryError
from ternary_core.formats.json_text import parse_json

from .profiles import board, build_kind
from .reports import missed_clocks

PROGRAMMERS = {
    "icebreaker": [("iceprog", ["{bit}"]), ("openFPGALoader", ["-b", "ice40_generic", "{bit}"])],
    "ulx3s-85f": [("openFPGALoader", ["-b", "ulx3s", "{bit}"]), ("fujprog", ["{bit}"])],
}
BITSTREAM = {"icebreaker": "icebreaker.bin", "ulx3s-85f": "ulx3s-85f.bit"}
# where the programmers come from, for the message when none is installed
INSTALL = {"icebreaker": "e.g. apt install fpga-icestorm (iceprog) or openfpgaloader",
           "ulx3s-85f": "e.g. apt install openfpgaloader, or fujprog from its releases"}


def read_report(path):
    """A build report as a dict; a file that is not one (not JSON, not an object, nested
    past Python's recursion limit) is an error naming it."""
    try:
        return parse_json(path.read_bytes(), str(path), expect=dict)
    except OSError as exc:
        why = exc.strerror or exc
    except TernaryError as exc:
        why = str(exc).removeprefix(f"{path}: ")
    raise TernaryError(f"{path}: not a readable build report ({why}); pass --force to "
                       f"program without it")


def _mhz(rep, key, rep_path):
    v = rep.get(key)
    if v is None and key == "fmax_mhz":
        return None    # nextpnr reported none
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise TernaryError(f"{rep_path}: {key} must be a number of MHz greater than 0, got {v!r}; "
                           f"rebuild, or pass --force")
    return float(v)


def _missed_clocks(rep, rep_path):
    """The clocks of the report's ``clocks`` (``{name: {achieved, constraint}}``, MHz;
    absent in reports of builds before it) below their constraint; a malformed entry is an
    error naming the report."""
    clocks = rep.get("clocks", {})
    ok = isinstance(clocks, dict) and all(
        isinstance(c, dict) and all(isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool)
                                    and math.isfinite(c.get(k)) and c.get(k) > 0
                                    for k in ("achieved", "constraint"))
        for c in clocks.values())
    if not ok:
        raise TernaryError(f"{rep_path}: clocks must map each clock to its achieved and "
                           f"constraint MHz, got {clocks!r:.80}; rebuild, or pass --force")
    return missed_clocks(clocks)


def check_build_report(bit, name=None):
    """Refuse a bitstream whose build report says timing was not met (a board clocked past
    its Fmax can compute wrong results without any error), or whose report describes
    another bitstream, or contradicts itself. The report is ``report.json`` beside it
    (``report.failed.json`` for a ``NAME.failed.EXT`` that `ternary build` kept). No
    report: nothing to check, except that a ``.failed.`` bitstream is refused."""
    failed_name = ".failed." in bit.name
    rep_path = bit.parent / ("report.failed.json" if failed_name else "report.json")
    if not (rep_path.exists() or rep_path.is_symlink()):
        if failed_name:
            raise TernaryError(f"--bitstream {bit}: is a build that missed timing (no report beside "
                               f"it to say otherwise); pass --force to program it anyway")
        return None
    if not rep_path.is_file():
        raise TernaryError(f"{rep_path}: is not a regular file, so not a build report; remove "
                           f"it, or pass --force to program without it")
    rep = read_report(rep_path)
    if name is not None and rep.get("board") not in (None, name):
        raise TernaryError(f"--bitstream {bit}: {rep_path} is of a {rep.get('board')!r} build, "
                           f"not {name}'s; give the right --board, or pass --force")
    met, sha = rep.get("timing_met"), rep.get("bitstream_sha256")
    if not isinstance(met, bool):
        raise TernaryError(f"{rep_path}: timing_met must be true or false, got {met!r}; rebuild, "
                           f"or pass --force")
    fmax, target = _mhz(rep, "fmax_mhz", rep_path), _mhz(rep, "target_mhz", rep_path)
    if met and (fmax is None or fmax < target):
        raise TernaryError(f"{rep_path}: says timing met, but Fmax {fmax} MHz < target {target} "
                           f"MHz; rebuild, or pass --force")
    missed = _missed_clocks(rep, rep_path)
    if met and missed:
        raise TernaryError(f"{rep_path}: says timing met, but its clocks say {', '.join(missed)} "
                           f"missed; rebuild, or pass --force")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise TernaryError(f"{rep_path}: has no bitstream_sha256 (got {sha!r}), so it cannot say "
                           f"which bitstream it describes; rebuild, or pass --force")
    if sha != hashlib.sha256(bit.read_bytes()).hexdigest():
        raise TernaryError(f"--bitstream {bit}: {rep_path} describes another build; rebuild, "
                           f"or pass --force to program it unchecked")
    if not met:
        raise TernaryError(f"--bitstream {bit}: its build missed timing (Fmax {fmax} MHz "
                           f"< target {target} MHz, {rep_path}); rebuild with a lower "
                           f"--freq, or pass --force")
    return rep


def program(name, bitstream=None, force=False, offload="matvec", sdram=False):
    """Load ``bitstream`` with the first programmer found; by default the bitstream of
    the build that ``ternary build --offload OFFLOAD [--sdram]`` makes
    (``build/NAME/NAME.EXT``, ``build/NAME-model/...``, ``build/NAME-model-sdram/...``).

    Raises :class:`TernaryError` if the build report beside the bitstream says timing
    was not met (unless ``force``), or no programmer is installed, or it fails.
    """
    if name not in PROGRAMMERS:
        raise TernaryError(f"no programmer recipe for board {name!r}; known: {', '.join(PROGRAMMERS)}")
    if sdram and offload != "model":
        raise TernaryError("--sdram: only with --offload model (the build that streams the "
                           "model from the SDRAM)")
    kind, profile = build_kind(offload, sdram), board(name)
    build_flags = "" if kind == "matvec" else f" --offload model{' --sdram' if sdram else ''}"
    if profile.build_clock_hz(kind) is None:
        raise TernaryError(f"{build_flags.strip()}: the {name} has no such build")
    if bitstream is not None and not str(bitstream):
        raise TernaryError("--bitstream: the path is empty (leave --bitstream out for the "
                           "build's own)")
    bit = Path(bitstream or Path("build") / profile.build_name(kind) / BITSTREAM[name])
    if bit.exists() and not bit.is_file():
        raise TernaryError(f"--bitstream {bit}: is not a regular file, so not a bitstream")
    if not bit.is_file():
        if bitstream is not None:
            raise TernaryError(f"--bitstream {bit}: no such file")
        raise TernaryError(f"no bitstream at {bit}: run `ternary build --board {name}"
                           f"{build_flags}` first (or give --bitstream)")
    if bit.stat().st_size == 0:
        raise TernaryError(f"--bitstream {bit}: is empty (0 bytes); rebuild it")
    if not force:
        rep = check_build_report(bit, name)
        # the build the flags name (the default folder's, or --offload model [--sdram]
        # given with --bitstream) is the one its report describes
        if rep is not None and (bitstream is None or kind != "matvec"):
            built = build_kind(rep.get("offload") or "matvec", bool(rep.get("sdram")))
            if built != kind:
                raise TernaryError(f"--bitstream {bit}: its report is of the {built} build, not "
                                   f"the {kind} build{build_flags and ' (' + build_flags.strip() + ')'}; "
                                   f"give the flags of its build, or pass --force")
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
    raise TernaryError(f"no programmer found for {name}: install {names} ({INSTALL[name]})")
