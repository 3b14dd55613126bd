"""Run a cocotb testbench on a generated design from pytest (cocotb_tools.runner)."""

import os
from pathlib import Path

from cocotb_tools.runner import get_runner

from .toolchain import use_verilator

SIMULATORS = ("verilator", "icarus")

# The C++ of a testbench's model unoptimized: a testbench runs thousands of cycles, not
# millions, and cocotb's Python drives each one, so compiling the model dominates. The
# flag lands after Verilator's own OPT_FAST/OPT_GLOBAL (-Os) on the compiler's command
# line, and the last -O wins: 84 s -> 29 s for the 4x40 base-3 engine's testbench.
VERILATOR_OPT = "-O0"


def run_cocotb(verilog_text, toplevel, test_module, build_dir, *, simulator="verilator",
               extra_env=None, testcase=None, seed=None):
    """Build ``verilog_text`` and run ``test_module``'s tests on it.

    On failure the run is repeated with waveforms on, and the waveform's path is in
    the raised error. Returns the results XML path.
    """
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    src.write_text(verilog_text)
    if simulator == "verilator":
        use_verilator()
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                      "-CFLAGS", VERILATOR_OPT]
    else:
        build_args = []
    env = {**(extra_env or {}), "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}

    def attempt(waves):
        runner = get_runner(simulator)
        runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir / ("waves" if waves else "fast"),
                     build_args=build_args, waves=waves, timescale=("1ns", "1ps"), always=False)
        return runner.test(hdl_toplevel=toplevel, test_module=test_module, testcase=testcase,
                           waves=waves, extra_env=env, seed=seed,
                           test_dir=build_dir / ("waves" if waves else "fast"))

    try:
        return attempt(False)
    except SystemExit:
        pass
    try:
        attempt(True)
    except SystemExit:
        pass
    waves = sorted(p for p in (build_dir / "waves").rglob("*") if p.suffix in (".vcd", ".fst"))
    where = ", ".join(str(p) for p in waves) or "(no waveform was written)"
    raise AssertionError(f"cocotb tests in {test_module} failed on {simulator}; waveform: {where}")
