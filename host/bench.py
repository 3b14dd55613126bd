"""``ternary bench``: resources, Fmax, cycles against the ideal, and tokens/s bounds
per board and array configuration, measured, with a table, JSON and a plot."""

import json
import sys
import time
from dataclasses import replace

from boards.profiles import board
from ternary_core.errors import TernaryError
from ternary_core.golden import ideal_cycles
from ternary_core.backend import GoldenBackend

from .bench_builds import BuildRequest, build_all
from .device import Device
from .matvec_offload import DeviceBackend
from .generate import Sampler, generate, load
from .projection import project, report_path

DEFAULT_CONFIGS = {"icebreaker": ["4x10/base3", "4x8/2bit", "2x20/base3"],
                   "ulx3s-85f": ["16x16/2bit", "4x40/base3"]}
FIELDS = ("board", "offload", "rows", "cols", "format", "luts", "ffs", "dsp", "bram", "fmax_mhz",
          "macs_per_cycle", "cycles_per_token", "ideal_cycles_per_token", "tokens_per_s_compute",
          "tokens_per_s_memory", "tokens_per_s_link", "tokens_per_s")
PROMPT, TOKENS = "ROMEO:", 8


def parse_config(text):
    """``RxC/format`` (``x`` or ``×``) -> ``(rows, cols, format)``."""
    try:
        shape, fmt = text.strip().split("/")
        r, c = shape.replace("×", "x").split("x")
        return int(r), int(c), fmt
    except ValueError:
        raise TernaryError(f"config {text!r}: expected ROWSxCOLS/FORMAT, e.g. 4x10/base3") from None


def measure_engine(cfg, model, log):
    """Generate a few tokens on a simulated board of ``cfg``: per-token costs, sim speed."""
    tok_ids = list(PROMPT.encode())
    device = Device.open_sim(cfg, log=log)
    backend = DeviceBackend(device, log=log)
    t0 = time.perf_counter()
    generate(model, backend, tok_ids, TOKENS, Sampler(0.0))
    wall = time.perf_counter() - t0
    per = backend.per_token()
    backend.close()
    stats = device.transport.stats_line()  # "board: N cycles, ..."
    cycles = int(stats.split()[1]) if stats.startswith("board:") else 0
    return per, cycles / wall if wall else 0.0


def reference_tokens_per_s(model):
    res = generate(model, GoldenBackend(), list(PROMPT.encode()), 64, Sampler(0.0))
    return res.tokens_per_s


def bench(boards=None, configs=None, *, jobs=None, log=sys.stderr):
    """Build every (board, config) — in parallel, ``jobs`` at a time, reusing cached
    builds (see :mod:`host.bench_builds`) — then measure each on the simulated board.
    Rows come in the order requested: boards, then each board's configs."""
    plan = []
    for name in boards or ["icebreaker"]:
        profile = board(name)
        for text in configs or DEFAULT_CONFIGS.get(name, []):
            r, c, fmt = parse_config(text)
            cfg = replace(profile.engine, rows=r, cols=c, fmt=fmt)
            plan.append((profile, BuildRequest(name, cfg)))
    if not plan:
        raise TernaryError("--configs: no configuration to bench for these boards")
    reports = build_all([req for _, req in plan], jobs=jobs, log=log)
    model, _ = load()
    rows = []
    for (profile, req), rep in zip(plan, reports):
        print(f"== measuring {req.label} on the simulated board", file=log, flush=True)
        rows.append(measure_row(profile, req.config, rep, model, log))
        # the whole model runs on the board's own engine shape, which its machine is sized for
        if profile.vm_limits is not None and req.config == profile.engine:
            print(f"== measuring {req.label} with the whole model on the device", file=log, flush=True)
            rows.append(measure_model_row(profile, req.config, model_report(profile), model, log))
    return {"configs": rows, "reference_tokens_per_s": round(reference_tokens_per_s(model), 1),
            "model": "shipped shakespeare-bitnet", "tokens_measured": TOKENS}


def measure_row(profile, cfg, rep, model, log):
    """One row of the bench: the build's report and the engine's measured costs."""
    r, c = cfg.rows, cfg.cols
    per, sim_cps = measure_engine(cfg, model, log)
    ideal = sum(ideal_cycles(*b.trits.shape, r, c) for b in model.bitlinears.values())
    fmax = rep["fmax_mhz"]
    proj = project(profile, per, fmax * 1e6, "Fmax of this build")
    return {
        "board": profile.name, "offload": "matvec", "rows": r, "cols": c, "format": cfg.fmt,
        "luts": rep["luts"],
        "ffs": rep["ffs"], "dsp": rep["dsp"], "bram": rep["bram"], "spram": rep.get("spram", 0),
        "fmax_mhz": round(fmax, 2), "target_mhz": rep["target_mhz"], "timing_met": rep["timing_met"],
        "macs_per_cycle": r * cfg.cols, "trits_per_word": r * c, "word_bits": 8 * cfg.word_bytes,
        "cycles_per_token": round(per["device_cycles_per_token"]),
        "ideal_cycles_per_token": ideal,
        "link_bytes_per_token": round(per["link_bytes_per_token"]),
        "tokens_per_s_compute": round(proj["tokens_per_s_compute"], 1),
        "tokens_per_s_memory": round(proj["tokens_per_s_memory"], 1),
        "tokens_per_s_link": round(proj["tokens_per_s_link"], 2),
        "tokens_per_s": round(proj["tokens_per_s"], 2), "bound": proj["bound"],
        "sim_cycles_per_s": round(sim_cps),
    }


CONTEXTS = (1, 128, 256)   # model offload: cycles of the step at these context lengths


def measure_model(profile, cfg, model, log):
    """Model offload on the simulated board with the vector machine: generate until the
    context is full, then read each step's cycles back (CYCLES, READ_MEM)."""
    from ternary_core.offload.cost import program_cost
    from ternary_core.offload.isa import SPACES, Space

    from .model_offload import ModelOffload

    device = Device.open_sim(cfg, log=log, vm_limits=profile.vm_limits)
    run = ModelOffload(device, model, log=log)
    try:
        run.prepare()
        context = model.config.max_position_embeddings
        prompt = list(PROMPT.encode())
        t0 = time.perf_counter()
        run.generate(prompt, context - len(prompt) + 1)
        wall = time.perf_counter() - t0
        per = run.per_token()
        raw = device.read_mem(Space.CYCLES, 0, context, SPACES[Space.CYCLES].link_bytes)
        cycles = [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(context)]
        at = {n: cycles[n - 1] for n in CONTEXTS if n <= context}
        ideal = {n: program_cost(run.program, n - 1)["total"] for n in at}
    finally:
        run.close()
    return per, at, ideal, sum(cycles) / wall if wall else 0.0


def model_report(profile):
    """The build report of ``profile``'s device with the vector machine (`ternary build
    --offload model`, committed beside the engine's); without one, its target clock and
    no resources."""
    path = report_path(profile, "model")
    if path.is_file():
        return json.loads(path.read_text())
    mhz = profile.vm_clock_hz / 1e6
    return {"luts": None, "ffs": None, "dsp": None, "bram": None, "timing_met": None,
            "fmax_mhz": mhz, "target_mhz": mhz}


def measure_model_row(profile, cfg, rep, model, log):
    """A model-offload row: cycles per token at context 1, 128 and 256 (measured, and the
    op-level ideal), tokens/s at the build's Fmax at the largest of them its build holds
    (its report's ``vm_limits.context``; the simulated board holds the full context),
    link bytes/token."""
    per, at, ideal, sim_cps = measure_model(profile, cfg, model, log)
    fmax = rep["fmax_mhz"]
    held = (rep.get("vm_limits") or {}).get("context") or max(at)
    ctx = max([n for n in at if n <= held] or [min(at)])
    full = at[ctx]
    link_bytes = per["link_bytes_per_token"]
    proj = project(profile, {"device_cycles_per_token": full, "link_bytes_per_token": link_bytes},
                   fmax * 1e6, "Fmax of this build")
    return {
        "board": profile.name, "offload": "model", "rows": cfg.rows, "cols": cfg.cols,
        "format": cfg.fmt, "luts": rep["luts"], "ffs": rep["ffs"], "dsp": rep["dsp"],
        "bram": rep["bram"], "spram": rep.get("spram", 0), "fmax_mhz": round(fmax, 2),
        "target_mhz": rep["target_mhz"], "timing_met": rep["timing_met"],
        "macs_per_cycle": cfg.rows * cfg.cols,
        "context": ctx, "cycles_per_token": full, "ideal_cycles_per_token": ideal[ctx],
        "cycles_at_context": {str(n): v for n, v in at.items()},
        "ideal_at_context": {str(n): v for n, v in ideal.items()},
        "link_bytes_per_token": round(link_bytes, 2),
        "tokens_per_s_compute": round(proj["tokens_per_s_compute"], 1), "tokens_per_s_memory": None,
        "tokens_per_s_link": round(proj["tokens_per_s_link"], 2),
        "tokens_per_s": round(proj["tokens_per_s"], 2), "bound": proj["bound"],
        "sim_cycles_per_s": round(sim_cps),
    }


def table(result):
    head = ["board", "offload", "array", "fmt", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "MAC/cyc",
            "cycles/tok", "ideal", "tok/s compute", "tok/s memory", "tok/s link", "tok/s", "bound"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["configs"]:
        mem = r["tokens_per_s_memory"]
        lines.append("| " + " | ".join(str(v) for v in [
            r["board"], r.get("offload", "matvec"), f"{r['rows']}x{r['cols']}", r["format"], *("-" if r[k] is None else r[k] for k in ("luts", "ffs", "dsp", "bram")),
            f"{r['fmax_mhz']:.1f}", r["macs_per_cycle"], f"{r['cycles_per_token']:,}",
            f"{r['ideal_cycles_per_token']:,}", f"{r['tokens_per_s_compute']:,.0f}",
            "-" if mem is None else f"{mem:,.0f}", f"{r['tokens_per_s_link']:.1f}",
            f"{r['tokens_per_s']:.1f}", r["bound"]]) + " |")
    return "\n".join(lines)


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TernaryError("--plot needs matplotlib: pip install 'ternary-engine[plot]'") from None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {"2bit": "s", "base3": "o"}
    colors = {}
    for r in result["configs"]:
        if r.get("offload", "matvec") != "matvec":   # same build as its matvec row
            continue
        c = colors.setdefault(r["board"], f"C{len(colors)}")
        x, label = r["macs_per_cycle"], f"{r['rows']}x{r['cols']}"
        a1.scatter(x, r["luts"], marker=markers[r["format"]], color=c)
        a1.annotate(label, (x, r["luts"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        a2.scatter(x, r["tokens_per_s_compute"], marker=markers[r["format"]], color=c)
        a2.scatter(x, r["tokens_per_s"], marker=markers[r["format"]], facecolors="none", edgecolors=c)
        a2.annotate(label, (x, r["tokens_per_s_compute"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=c, marker="o", ls="", label=b) for b, c in colors.items()]
    handles += [Line2D([], [], color="k", marker=mk, ls="", label=f) for f, mk in markers.items()]
    handles += [Line2D([], [], color="k", marker="o", ls="", mfc="none", label="with the UART (min)")]
    a1.set(xlabel="ternary MACs per cycle", ylabel="LUTs (log)", title="Area", xscale="log", yscale="log")
    a2.set(xlabel="ternary MACs per cycle", ylabel="tokens/s of the shipped model (log)",
           title="Compute bound (filled) and overall (hollow)", xscale="log", yscale="log")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
    a2.legend(handles=handles, fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
