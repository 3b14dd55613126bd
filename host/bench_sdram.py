"""`ternary bench --sdram`: the matvec engine fed from the ULX3S SDRAM, measured.

For each engine, a 512x512 layer is written into LiteDRAM's SDRAM model and multiplied
with the layer streamed in one burst (sim/tb_sdram_matvec.py under Verilator, the
controller at half rate: 50 MHz, a 32-bit port, the SDRAM at 100 MHz): its cycles against
the port's peak (its words at one a cycle), and what that rate makes of a token of the
issue-20 model shapes (bytes a token: ternary weights plus the int8 lm_head). Then the
same with the engine at 30 MHz, the controller at 50 MHz in its own clock domain
(LiteDRAM's clock-domain crossing): on a 32-bit port (bound by the port: a word a 30 MHz
cycle) and on a 64-bit one (bound by the SDRAM): the SDRAM build's device clock (a row of
its own if that is not 30 MHz).
"""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from boards.profiles import board
from ternary_core.errors import TernaryError

CLK_FREQ = 50e6     # the controller's
# the device's clock of the ULX3S's SDRAM build, where its port is measured too
DEVICE_HZ = board("ulx3s-85f").vm_sdram_clock_hz
# (engine, format, the engine's clock, the port's bits); the engine's clock None: the
# controller's, one domain; the last the SDRAM build's (once, if it is 30 MHz)
ENGINES = tuple(dict.fromkeys((
    ("2x8", "2bit", None, 32), ("4x8", "2bit", None, 32), ("2x10", "base3", None, 32),
    ("2x8", "2bit", 30e6, 32), ("4x8", "2bit", 30e6, 64), ("4x8", "2bit", DEVICE_HZ, 64))))
# The context the bench's models run at
CONTEXT = 256
# The SDRAM's peak: 16 bits at 100 MHz
SDRAM_PEAK = 200e6
# (name, hidden, layers, ffn, heads, kv heads, vocab): issue 20's shapes (the projection
# of the engine's rate)
MODEL_SHAPES = (("hidden 512 / 8 layers / FFN 1376 / vocab 8192", 512, 8, 1376, 8, 4, 8192),
                ("hidden 768 / 12 layers / FFN 2048 / vocab 8192", 768, 12, 2048, 12, 6, 8192))
# A step program's instructions a layer, at most (the largest-model search's room for the
# program in the SDRAM; the compile that follows checks the real one)
_INSTRS_A_LAYER, _INSTRS_BESIDE = 800, 4000


def build_shapes(limits, engine, context):
    """The shapes the SDRAM build runs in the bench: issue 20's hidden-512 model, and the
    largest of its kind (the most layers) whose SDRAM image, program and KV cache at
    ``context`` fit the build's SDRAM."""
    from ternary_core.offload import overlay
    from ternary_core.offload.memory_map import MemoryMap

    name, hidden, layers, ffn, heads, kv, vocab = MODEL_SHAPES[0]

    def fits(n):
        cfg = shape_config((hidden, n, ffn, heads, kv, vocab), context)
        room = overlay.sdram_words(_INSTRS_A_LAYER * n + _INSTRS_BESIDE, limits.prog_words)
        try:
            MemoryMap(cfg, context, limits, engine, sdram=True, prog_sd_words=room)
            return True
        except TernaryError:
            return False

    lo, hi = layers, limits.layers + 1         # fits(lo); not fits(hi)
    if not fits(lo):
        raise TernaryError(f"{name} does not fit the SDRAM build")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    big = (f"hidden {hidden} / {lo} layers / FFN {ffn} / vocab {vocab} (the most layers that "
           f"fit)", hidden, lo, ffn, heads, kv, vocab)
    return (MODEL_SHAPES[0], big)


def measure(engines=ENGINES, *, seed=1, log=sys.stderr):
    from sim.cocotb_run import run_cocotb
    from sim.export import config_to_env, sdram_matvec_verilog
    from ternary_core.engine_config import EngineConfig

    rows = []
    with tempfile.TemporaryDirectory(prefix="ternary-sdram-bench-") as tmp:
        for shape, fmt, user_hz, port_bits in engines:
            r, c = (int(v) for v in shape.split("x"))
            cfg = EngineConfig(rows=r, cols=c, fmt=fmt, max_m=512, max_k=512, weight_words=16)
            clocks = f"at {user_hz / 1e6:g} MHz, " if user_hz else ""
            print(f"measuring the {shape} {fmt} engine fed from SDRAM ({clocks}{port_bits}-bit port; "
                  "Verilator, about a minute) ...", file=log, flush=True)
            text, geometry = sdram_matvec_verilog(cfg, clk_freq=CLK_FREQ, two_clocks=bool(user_hz),
                                                  port_data_width=port_bits)
            name = f"{shape}-{fmt}-{user_hz or CLK_FREQ:g}-{port_bits}"
            record = Path(tmp) / f"{name}.jsonl"
            env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(geometry)),
                   "TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed),
                   "TERNARY_TB_RECORD": str(record), "TERNARY_TB_USER_HZ": str(user_hz or "")}
            run_cocotb(text, "sdram_matvec", "sim.tb_sdram_matvec", Path(tmp) / name,
                       extra_env=env, testcase="a_large_layer_streams_near_the_memorys_rate", seed=seed)
            rec = json.loads(record.read_text().splitlines()[-1])
            ratio = rec["sdram_words"] / rec["cycles"]
            peak = min(1.0, CLK_FREQ * geometry.controller_data_width / ((user_hz or CLK_FREQ) * port_bits))
            rows.append({"engine": shape, "format": fmt, "macs": r * c, **rec,
                         "words_per_cycle": round(ratio, 3), "of_bound": round(ratio / peak, 3),
                         "mb_per_s": round(rec["mb_per_s"], 1)})
    rate = next((r["words_per_cycle"] for r in rows
                 if r["user_mhz"] == DEVICE_HZ / 1e6 and r["port_bits"] == 64), None)
    return {"clock_mhz": CLK_FREQ / 1e6, "rate": "1:2", "rows": rows, "models": project(rows),
            "programs": program_projection(rate) if rate else []}


def token_bytes(hidden, layers, ffn, heads, kv, vocab, fmt):
    head_dim = hidden // heads
    trits = layers * (2 * hidden * hidden + 2 * hidden * kv * head_dim + 3 * hidden * ffn)
    return trits * (2 / 8 if fmt == "2bit" else 1 / 5) + vocab * hidden


def project(rows):
    """Tokens/s of the issue's model shapes at each format's measured rate (a projection:
    weights and lm_head only, no machine overhead)."""
    out = []
    for name, *shape in MODEL_SHAPES:
        for fmt in ("2bit", "base3"):
            rate = max((r["mb_per_s"] for r in rows if r["format"] == fmt), default=None)
            if rate is None:
                continue
            b = token_bytes(*shape, fmt)
            out.append({"model": name, "format": fmt, "mb_per_token": round(b / 1e6, 2),
                        "tokens_per_s": round(rate * 1e6 / b, 1)})
    return out


def shape_config(shape, context):
    """The tied BitNetConfig of a :data:`MODEL_SHAPES` entry's numbers at ``context``."""
    from ternary_core.model.config import BitNetConfig

    hidden, layers, ffn, heads, kv, vocab = shape
    return BitNetConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn,
                        num_hidden_layers=layers, num_attention_heads=heads,
                        num_key_value_heads=kv, max_position_embeddings=context,
                        tie_word_embeddings=True)


def program_projection(words_per_cycle, *, board_name="ulx3s-85f", context=CONTEXT, seed=0):
    """The step program of each :func:`build_shapes` shape (a random tied model, compiled
    for the board's SDRAM build) at the last position of ``context``: the
    SDRAM bytes it moves, its cycles with the transfers beside the machine at
    ``words_per_cycle`` 64-bit words a cycle of the build's device clock (:func:`~ternary_core.offload.cost.overlapped_cycles`:
    a projection of the program, not a measurement of a device), against the SDRAM's
    bound (its bytes at the memory's peak, 200 MB/s)."""
    import numpy as np

    from ternary_core.integer import compile_model
    from ternary_core.offload.compiler import compile_program
    from ternary_core.offload.cost import overlapped_cycles, sdram_words
    from ternary_core.model.random import random_model

    profile = board(board_name)
    limits, clock_hz = profile.vm_sdram_limits, profile.vm_sdram_clock_hz
    engine = profile.vm_engine(limits)
    out = []
    for name, *shape in build_shapes(limits, engine, context):
        cfg = shape_config(shape, context)
        im = compile_model(random_model(np.random.default_rng(seed), cfg))
        program = compile_program(im, limits, engine=engine, sdram=True,
                                  **limits.compile_options())
        pos = context - 1
        nbytes = 8 * sdram_words(program, pos)
        cycles = overlapped_cycles(program, pos, words_per_cycle=words_per_cycle)
        bound = nbytes / (SDRAM_PEAK / clock_hz)
        out.append({"model": name, "instructions": len(program.instrs),
                    "mb_per_token": round(nbytes / 1e6, 2), "cycles": cycles,
                    "bound_cycles": round(bound), "of_bound": round(bound / cycles, 3),
                    "tokens_per_s": round(clock_hz / cycles, 1)})
    return out


def measure_models(board_name="ulx3s-85f", shapes=None, *, context=CONTEXT, seed=0,
                   log=sys.stderr):
    """Each shape (a random tied model; default :func:`build_shapes`) streamed from the
    SDRAM on the simulated board of
    ``board_name``'s SDRAM build (its machine, LiteDRAM's controller and LiteDRAM's model
    of the chip at the board's clock ratio; the image written by the back door): the
    device cycles of the steps that generate at :func:`positions` (from ``context // 4``
    on, each step alone over a KV cache of random rows, which the step fetches whole:
    what it holds changes no step's time), against the SDRAM's bound (the step's bytes at
    the memory's 200 MB/s peak), and tokens/s at the build's clock. The ids of the steps
    at 0..2 must equal ``--backend integer``'s (else a TernaryError: no figures of a
    machine that computes wrong)."""
    import numpy as np

    from ternary_core.model.random import random_model
    from ternary_core.offload.cost import sdram_words
    from ternary_core.offload.isa import Space

    from .device import Device
    from .model_offload import ModelOffload, sdram_image

    profile = board(board_name)
    limits = profile.vm_sdram_limits
    if limits is None:
        raise TernaryError(f"the {board_name} has no build that streams from an SDRAM")
    engine, clock = profile.vm_engine(limits), profile.vm_sdram_clock_hz
    rows = []
    for name, *shape in shapes or build_shapes(limits, engine, context):
        model = random_model(np.random.default_rng(seed), shape_config(shape, context))
        print(f"measuring {name} streamed from the SDRAM on the simulated {board_name} "
              f"(Verilator; seconds a step) ...", file=log, flush=True)
        image = sdram_image(model, limits, engine)
        with Device.open_sim(engine, vm_limits=limits, sdram_image=_with_kv_cache(image, model, limits, engine),
                             log=log) as dev:
            run = ModelOffload(dev, model, log=log, step_timeout=3600, sdram_preloaded=True)
            run.prepare()
            ids, _, _ = dev.run_model(0, [1], 3, state=1, timeout=3600)
            want = _integer_ids(model, [1], 3)
            if ids != want:     # a bench of a wrong machine measures nothing
                raise TernaryError(f"{name}: the simulated board generated {ids}, the integer "
                                   f"backend {want}")
            for pos in positions(context)[3:]:
                dev.run_model(pos, [ids[-1]], 1, state=1, timeout=3600)
            for pos in positions(context):
                cycles = int(np.frombuffer(dev.read_mem(Space.CYCLES, pos, 1, 4), "<u4")[0])
                nbytes = 8 * sdram_words(run.program, pos)
                bound = nbytes / (SDRAM_PEAK / clock)
                rows.append({"model": name, "position": pos, "mb": round(nbytes / 1e6, 2),
                             "cycles": cycles, "bound_cycles": round(bound),
                             "of_bound": round(bound / cycles, 3),
                             "tokens_per_s": round(clock / cycles, 1), "clock_mhz": clock / 1e6,
                             "ids_equal_integer": True})
    return rows


def positions(context):
    """The positions :func:`measure_models` measures: the first three (a run's), then
    a quarter, half and three quarters of ``context`` and ``context - 2``, the last
    step that generates."""
    return tuple(sorted({0, 1, 2, context // 4, context // 2, 3 * context // 4, context - 2}))


def context_mean(rows, context):
    """``{model: tokens/s}`` over a whole context: ``context`` tokens, one a position, in
    the cycles the measured positions' steps make by the trapezoid rule between them (the
    last segment's slope carried on to ``context - 1``): an estimate, exact where a step's
    cycles grow linearly between the measured positions (they grow with the KV cache the
    step fetches; measured on the fitted ULX3S build, 57.7 K, 62.7 K, 62.3 K and 62.5 K
    cycles per 64 positions for the hidden-512 model), and below the true tokens/s where
    they grow faster further on."""
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["position"], r["cycles"]) for r in rows if r["model"] == name)
        (p0, c0), (p1, c1) = pts[-2:]
        pts.append((context - 1, c1 + (c1 - c0) * (context - 1 - p1) / (p1 - p0)))
        # the sum over every position: the trapezoids' area, and half of each end
        total = (sum((p1 - p0) * (c0 + c1) / 2 for (p0, c0), (p1, c1) in zip(pts, pts[1:]))
                 + (pts[0][1] + pts[-1][1]) / 2)
        clock = next(r["clock_mhz"] for r in rows if r["model"] == name) * 1e6
        out[name] = round(clock * context / total, 1)
    return out


def _integer_ids(model, prompt, n):
    """The ids ``--backend integer`` generates greedily after ``prompt``."""
    from ternary_core.integer import IntegerSampler

    from .generate import generate, integer_runner

    return generate(model, integer_runner(model), prompt, n, IntegerSampler(0.0, 0, 0)).token_ids


def _with_kv_cache(image, model, limits, engine, seed=0):
    """``image`` followed by a KV cache of random int8 rows and canonical scales, so that a
    step far into the context (measured without running the ones before it) attends over
    rows like a run's, not over zeros (whose zero scales overflow the softmax's scale)."""
    import numpy as np

    from ternary_core.offload.isa import scalar_word
    from ternary_core.offload.memory_map import MemoryMap

    cfg = model.config
    sd = MemoryMap(cfg, cfg.max_position_embeddings, limits, engine, sdram=True).sd
    rng = np.random.default_rng(seed)
    kv = np.zeros(sd.words - sd.image_words, np.uint64)
    rows = sd.kv["ks"] - sd.kv["k"]                     # K and V rows: random int8
    kv[:rows] = rng.integers(0, 1 << 63, rows, dtype=np.uint64)
    scales = np.array([scalar_word(m, -12) for m in rng.integers(1 << 15, 1 << 16, 1024)], np.uint64)
    kv[rows:] = np.resize(scales, kv.size - rows)
    return np.concatenate([image, kv])


def table(result):
    lines = [f"SDRAM-fed matvec, controller at {result['clock_mhz']:g} MHz ({result['rate']}), "
             "a 512x512 layer (cycles of the engine's clock; the port's peak: a word a cycle, "
             "or the SDRAM's when the port is faster):",
             "| engine | format | MACs | engine MHz | port bits | SDRAM words | cycles | words a cycle "
             "| of the port's peak | MB/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['engine']} | {r['format']} | {r['macs']} | {r['user_mhz']:g} | "
                     f"{r['port_bits']} | {r['sdram_words']:,} | {r['cycles']:,.0f} | "
                     f"{r['words_per_cycle']} | {r['of_bound']} | {r['mb_per_s']} |")
    lines += ["", "projected (weights + int8 lm_head at the measured rate):",
              "| model | format | MB a token | tokens/s |", "| --- | --- | --- | --- |"]
    for p in result["models"]:
        lines.append(f"| {p['model']} | {p['format']} | {p['mb_per_token']} | {p['tokens_per_s']} |")
    if result.get("measured_models"):
        clock = result["measured_models"][0]["clock_mhz"]
        lines += ["", f"measured: models streamed from the SDRAM on the simulated board "
                  f"(the device at {clock:g} MHz, LiteDRAM at 50, its SDRAM model at 100; the "
                  f"step that generates at each position):",
                  "| model | position | MB a step | cycles | SDRAM bound (200 MB/s) | of the bound "
                  f"| tokens/s at {clock:g} MHz |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["measured_models"]:
            lines.append(f"| {r['model']} | {r['position']} | {r['mb']} | {r['cycles']:,} | "
                         f"{r['bound_cycles']:,} | {r['of_bound']} | {r['tokens_per_s']} |")
        lines += ["", f"over a whole context ({result['context']} tokens; the measured steps' "
                  "cycles by the trapezoid rule between their positions):"]
        lines += [f"- {name}: {tps} tokens/s at {clock:g} MHz"
                  for name, tps in context_mean(result["measured_models"], result["context"]).items()]
    if result.get("programs"):
        lines += ["", "projected (the compiled step program at position 255, its transfers beside the "
                  "machine at the 64-bit port's measured rate at the device's clock):",
                  "| model | instructions | MB a token | cycles | SDRAM bound | of the bound | tokens/s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for p in result["programs"]:
            lines.append(f"| {p['model']} | {p['instructions']:,} | {p['mb_per_token']} | "
                         f"{p['cycles']:,} | {p['bound_cycles']:,} | {p['of_bound']} | "
                         f"{p['tokens_per_s']} |")
    return "\n".join(lines)
