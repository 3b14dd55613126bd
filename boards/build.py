"""``ternary build``: a bitstream and a report for a board, with the YoWASP tools."""

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from boards.profiles import BOARDS, board, build_kind
from ternary_core.errors import TernaryError
from ternary_core.output_file import replace_folder, staging_folder, write_output

from .reports import missed_clocks
from .yowasp import tool_env


# Yosys leaves a state register with an initial value binary-encoded (its FSM pass would
# drop the value); Amaranth's FSMs all have one. One-hot states take a LUT level or two
# off the control paths (the command engine's, the framer's, the parser's). Safe here
# because both tops hold the sync reset until the PLL locks, which sets every FSM to its
# initial state before it runs; the simulated board and the testbenches are unaffected.
ONE_HOT_FSMS = 'setattr -set fsm_encoding "one-hot" w:fsm_state'

# nextpnr for every build: its report (read by make_report) and a fixed seed (a build is
# repeatable). The 85F's whole-model SDRAM build places with the static (electrostatic)
# placer: HeAP's placements of it did not route (router2 stalled near 21,000 overused wires,
# router1 near 116,000), the static placer's route with router1 in about 40 minutes
# (docs/sdram.md, "The bitstream"). Its seed is its own: with seed 1 the device made
# 29.0 MHz (target 24) but the SDRAM PHY's 100 MHz clock 94.75; seed 2 meets all three
# (30.0, 64.7 of 50, 103.7 of 100). Not the others: they route as they are.
NEXTPNR_OPTS = "--report top.report.json --timing-allow-fail"
NEXTPNR_SEED = 1
CONGESTED_OPTS, CONGESTED_SEED = " --placer static", 2


def nextpnr_opts(congested=False):
    """nextpnr's options for a build (``congested``: the SDRAM build's)."""
    if congested:
        return f"{NEXTPNR_OPTS}{CONGESTED_OPTS} --seed {CONGESTED_SEED}"
    return f"{NEXTPNR_OPTS} --seed {NEXTPNR_SEED}"


def _platform_and_top(name, config, clock_hz, baud, vm_limits=None):
    if name == "icebreaker":
        from amaranth_boards.icebreaker import ICEBreakerPlatform

        from .tops import ICEBreakerTop
        return ICEBreakerPlatform(), ICEBreakerTop(config, clock_hz, baud), ".bin"
    if name.startswith("ulx3s-"):
        from amaranth_boards import ulx3s

        from .tops import ULX3STop
        plat = {"ulx3s-85f": ulx3s.ULX3S_85F_Platform}[name]  # the smaller ECP5s need own profiles
        return plat(), ULX3STop(config, clock_hz, baud, vm_limits=vm_limits), ".bit"
    raise TernaryError(f"no build recipe for board {name!r}")


# Above any PLL output of the boards' families (ECP5: 400 MHz, iCE40: 275)
MAX_FREQ_MHZ = 1000


def build(name, *, rows=None, cols=None, fmt=None, freq_mhz=None, out=None, offload="matvec",
          context=None, sdram=False, log=sys.stderr):
    """Build ``name``'s bitstream; return the report dict (also written as report.json).

    ``offload="model"`` builds the device with the vector machine (the whole decode step,
    at the profile's ``vm_clock_hz``; its weight store sized to the machine's
    ``weight_words``, its KV cache and RoPE table to ``context`` positions, default the
    machine's); ``"matvec"`` the matvec engine alone. ``sdram`` (with ``"model"``): the
    board's build that streams a model from its SDRAM (``vm_sdram_limits``; folder
    ``build/NAME-model-sdram``).

    A build that misses timing does not replace the last good bitstream and report:
    it is kept beside them as ``NAME.failed.EXT`` and ``report.failed.json`` (see
    :func:`publish`), and the returned report says so. The build runs in a new folder
    beside ``out`` that replaces ``out`` whole only when it is done.
    """
    profile = board(name)
    if sdram and offload != "model":
        raise TernaryError("--sdram: only with --offload model (the machine streams the model)")
    given = [f for f, v in (("--rows", rows), ("--cols", cols), ("--format", fmt)) if v is not None]
    if offload == "model" and given:
        e = profile.sdram_engine if sdram and profile.sdram_engine else profile.engine
        raise TernaryError(f"{'/'.join(given)}: the whole-model build (--offload model) has "
                           f"the {name}'s {e.rows}x{e.cols} {e.fmt} engine; leave "
                           f"{'them' if len(given) > 1 else 'it'} out")
    cfg = profile.engine
    cfg = replace(cfg, rows=cfg.rows if rows is None else rows, cols=cfg.cols if cols is None else cols,
                  fmt=fmt or cfg.fmt)  # EngineConfig checks the values and sizes
    if freq_mhz is not None and not (math.isfinite(freq_mhz) and freq_mhz > 0):
        raise TernaryError(f"--freq: expected a clock in MHz greater than 0, got {freq_mhz!r}")
    if freq_mhz is not None and freq_mhz > MAX_FREQ_MHZ:
        raise TernaryError(f"--freq: {freq_mhz:g} MHz is above any clock a board's PLL makes "
                           f"(at most {MAX_FREQ_MHZ} MHz)")
    if offload not in ("matvec", "model"):
        raise TernaryError(f"--offload: expected matvec or model, got {offload!r}")
    vm_limits = profile.vm_limits if offload == "model" else None
    if offload == "model" and vm_limits is None:
        raise TernaryError(f"--offload model: the {name} build has no vector machine "
                           f"(boards with one: {', '.join(n for n, b in BOARDS.items() if b.vm_limits)})")
    if sdram:
        if profile.vm_sdram_limits is None:
            raise TernaryError(f"--sdram: the {name} has no build that streams from an SDRAM "
                               f"(boards with one: "
                               f"{', '.join(n for n, b in BOARDS.items() if b.vm_sdram_limits)})")
        vm_limits = profile.vm_sdram_limits
    kind = build_kind(offload, sdram)
    if context is not None:
        if vm_limits is None:
            raise TernaryError("--context: only with --offload model (the machine's KV cache)")
        if not 1 <= context <= vm_limits.context:
            raise TernaryError(f"--context: expected 1..{vm_limits.context}, got {context}")
        vm_limits = replace(vm_limits, context=context)
    if vm_limits is not None:
        cfg = profile.vm_engine(vm_limits)
    clock_hz = round(freq_mhz * 1e6) if freq_mhz is not None else profile.build_clock_hz(kind)
    if clock_hz < 1e6:
        raise TernaryError(f"--freq: {freq_mhz:g} MHz is below any clock a board's PLL makes")
    # the whole-model device has its own folder: it never replaces the matvec build
    if out is not None and not str(out):
        raise TernaryError("--out: the output folder is empty (leave --out out for the default)")
    out = Path(out or Path("build") / profile.build_name(kind))
    check_out_folder(out)
    if out.is_symlink():  # the folder it names is replaced, the link stays
        out = Path(os.path.realpath(out))
        check_out_folder(out)
    platform, top, ext = _platform_and_top(name, cfg, clock_hz, profile.baud,  # checks the PLL
                                           vm_limits)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TernaryError(f"--out {out}: cannot create the folder {out.parent} "
                           f"({exc.strerror or exc})") from None
    # Built into a fresh folder beside ``out`` and renamed into place whole: an
    # interrupted or failed build leaves ``out`` as it was, never two builds' files mixed.
    stage = staging_folder(out, what="--out")
    try:
        what = " and the vector machine" if vm_limits is not None else ""
        print(f"building {name}: {cfg.rows}x{cfg.cols} {cfg.fmt} engine{what} at "
              f"{clock_hz / 1e6:g} MHz, UART {profile.baud} baud, for {out} (YoWASP tools; the "
              f"first run compiles them, about a minute) ...", file=log, flush=True)
        t0 = time.time()
        plan = platform.prepare(top, name="top",
                                script_after_read=ONE_HOT_FSMS,
                                synth_opts="-dsp" if name == "icebreaker" else "",
                                script_after_synth="tee -q -o top.stat.json stat -json",
                                nextpnr_opts=nextpnr_opts(congested=sdram))
        env = tool_env()
        try:
            plan.execute_local(str(stage), env=env)
        except Exception as exc:  # the build script's failure: show the tool's last lines
            logs = [p for p in (stage / "top.tim", stage / "top.rpt") if p.exists()]
            tail = "\n".join(logs[0].read_text().splitlines()[-15:]) if logs else str(exc)
            raise TernaryError(f"the {name} build failed ({out} is unchanged):\n{tail}") from None
        report = make_report(name, cfg, clock_hz, stage, time.time() - t0)
        report["offload"] = offload
        report["sdram"] = bool(sdram)
        if vm_limits is not None:
            report["vm_limits"] = vm_limits.__dict__
        report = publish(stage, name, ext, report, final=out)
        replace_folder(stage, out)
        return report
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


# What the tools write in a build folder (Amaranth's build script and everything it
# makes): never carried over from an earlier build.
TOOL_OUTPUTS = ("top.", "build_top.")


def check_out_folder(out):
    """``--out`` must be a folder a build can replace (or not exist yet), checked before
    the build's minutes: not the working folder, one of its parents or the root (a build
    replaces its folder whole)."""
    try:
        _check_out_folder(out)
    except (OSError, RuntimeError) as exc:       # a symlink loop, a name too long
        raise TernaryError(f"--out {out}: cannot use it ({getattr(exc, 'strerror', None) or exc})") from None


def _check_out_folder(out):
    real, here = out.resolve(), Path.cwd().resolve()
    if real == here or real in here.parents:
        where = "the working folder" if real == here else "a parent of the working folder"
        raise TernaryError(f"--out {out}: is {where}, which a build would replace whole; name "
                           f"a folder of its own")
    if out.exists() and not out.is_dir():
        raise TernaryError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise TernaryError(f"--out {out}: the folder is not writable (a build replaces it)")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise TernaryError(f"--out {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TernaryError(f"--out {out}: cannot create it in {parent} (not writable)")


def publish(stage, name, ext, report, final):
    """Put the build's ``top{ext}`` and ``report`` under their board names in ``stage``, the
    folder that will replace ``final`` (:func:`build`).

    Timing met: ``NAME{ext}`` and ``report.json``. Timing missed: ``NAME.failed{ext}`` and
    ``report.failed.json``, so `ternary program` cannot pick the failed one up by
    default, and the last good bitstream and report of ``final`` come along unchanged
    (hard links: the same files). Every other file of ``final`` that the build did not
    make again comes along too (a log beside it), except, after a good build, a stale
    failed pair, and the tools' outputs of an earlier build. The report records the
    bitstream's final name and SHA-256, which `program` checks.
    """
    stage, final = Path(stage), Path(final)
    good = report["timing_met"]
    data = (stage / f"top{ext}").read_bytes()
    bit_name = f"{name}{ext}" if good else f"{name}.failed{ext}"
    rep_name = "report.json" if good else "report.failed.json"
    report["bitstream"] = str(final / bit_name)
    report["bitstream_sha256"] = hashlib.sha256(data).hexdigest()
    if not good:
        last = final / f"{name}{ext}"
        report["last_good_bitstream"] = str(last) if last.is_file() else None
    write_output(stage / bit_name, data, what="bitstream")
    write_output(stage / rep_name, json.dumps(report, indent=2), what="report")
    if final.is_dir():
        stale = {f"{name}.failed{ext}", "report.failed.json"} if good else set()
        for entry in final.iterdir():
            if entry.name in stale or entry.name.startswith(TOOL_OUTPUTS) or \
                    (stage / entry.name).exists():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, stage / entry.name, symlinks=True, copy_function=_link)
            else:
                _link(entry, stage / entry.name)
    return report


def _link(src, dst):
    """Carry a file over unchanged: a hard link (the same file), else a copy."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def make_report(name, cfg, clock_hz, out, seconds):
    from .reports import parse_nextpnr_report, parse_yosys_stat

    cells = parse_yosys_stat(out / "top.stat.json")
    pnr = parse_nextpnr_report(out / "top.report.json")
    pnr["utilization"]["ffs"] = sum(v for k, v in cells.items() if k.startswith(("SB_DFF", "TRELLIS_FF")))
    return {
        "board": name, "rows": cfg.rows, "cols": cfg.cols, "format": cfg.fmt,
        "engine": cfg.__dict__, "target_mhz": clock_hz / 1e6,
        **timing(pnr["clocks"], clock_hz / 1e6),
        **pnr["utilization"], "yosys_cells": cells, "seconds": round(seconds, 1),
    }


def timing(clocks, target_mhz):
    """``fmax_mhz`` of the device's clock (the one constrained to ``target_mhz``), and
    ``timing_met``: every clock of the build (the SDRAM build's controller clocks too) at
    or above its own constraint. ``clocks`` as :func:`boards.reports.parse_nextpnr_report`
    gives them."""
    if not clocks:
        return {"fmax_mhz": None, "timing_met": False, "clocks": {}}
    device = clocks[device_clock(clocks, target_mhz)]
    met = not missed_clocks(clocks) and device["achieved"] >= target_mhz
    return {"fmax_mhz": device["achieved"], "timing_met": met, "clocks": clocks}


def device_clock(clocks, target_mhz):
    """The name of the device's clock among a build's ``clocks``: the one constrained
    nearest its target (the others are the SDRAM controller's)."""
    return min(clocks, key=lambda n: abs(clocks[n]["constraint"] - target_mhz))


def device_missed(report):
    """Whether the device's own clock (``fmax_mhz``) is below its target."""
    return report["fmax_mhz"] is None or report["fmax_mhz"] < report["target_mhz"]


def shortfall(report):
    """What missed timing in ``report``, for a message: the device's clock (``Fmax F MHz <
    T MHz``) and every other clock below its constraint (``sdram2x_clk 94.8 MHz < 100``)."""
    r = report
    fmax = "none" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f} MHz"
    out = [f"Fmax {fmax} < {r['target_mhz']:g} MHz"] if device_missed(r) else []
    clocks = r.get("clocks", {})
    for name in missed_clocks(clocks):
        c = clocks[name]
        if name == device_clock(clocks, r["target_mhz"]):
            continue                   # the device's clock, said as its Fmax
        out.append(f"{name.removeprefix('$glbnet$').removeprefix('clocks.')} "
                   f"{c['achieved']:.1f} MHz < {c['constraint']:g} MHz")
    return ", ".join(out) or "timing not met"


def summary(report):
    r = report
    fmax = "none" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f} MHz"
    parts = [f"{r['board']}: {r['rows']}x{r['cols']} {r['format']}",
             f"Fmax {fmax} (target {r['target_mhz']:g}: "
             f"{'met' if r['timing_met'] else 'NOT MET: ' + shortfall(r)})",
             f"LUT {r['luts']}/{r['luts_total']}", f"FF {r['ffs']}", f"BRAM {r['bram']}/{r['bram_total']}"]
    if r.get("spram_total"):
        parts.append(f"SPRAM {r['spram']}/{r['spram_total']}")
    parts.append(f"DSP {r['dsp']}/{r['dsp_total']}")
    return ", ".join(parts)
