"""`ternary bench --sdram`: the matvec engine fed from the ULX3S SDRAM, measured.

For each engine, a 512x512 layer is written into LiteDRAM's SDRAM model and multiplied
with the layer streamed in one burst (sim/tb_sdram_matvec.py under Verilator, the
controller at half rate: 50 MHz, a 32-bit port, the SDRAM at 100 MHz): its cycles against
the SDRAM bound (its words at one a cycle), and what that rate makes of a token of the
issue-20 model shapes (bytes a token: ternary weights plus the int8 lm_head).
"""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ENGINES = (("2x8", "2bit"), ("4x8", "2bit"), ("2x10", "base3"))
CLK_FREQ = 50e6
# (name, hidden, layers, ffn, heads, kv heads, vocab): issue 20's shapes
MODEL_SHAPES = (("hidden 512 / 8 layers / FFN 1376 / vocab 8192", 512, 8, 1376, 8, 4, 8192),
                ("hidden 768 / 12 layers / FFN 2048 / vocab 8192", 768, 12, 2048, 12, 6, 8192))


def measure(engines=ENGINES, *, seed=1, log=sys.stderr):
    from sim.cocotb_run import run_cocotb
    from sim.export import config_to_env, sdram_matvec_verilog
    from ternary_core.engine_config import EngineConfig

    rows = []
    with tempfile.TemporaryDirectory(prefix="ternary-sdram-bench-") as tmp:
        for shape, fmt in engines:
            r, c = (int(v) for v in shape.split("x"))
            cfg = EngineConfig(rows=r, cols=c, fmt=fmt, max_m=512, max_k=512, weight_words=16)
            print(f"measuring the {shape} {fmt} engine fed from SDRAM (Verilator, about a minute) ...",
                  file=log, flush=True)
            text, geometry = sdram_matvec_verilog(cfg, clk_freq=CLK_FREQ)
            record = Path(tmp) / f"{shape}-{fmt}.jsonl"
            env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(geometry)),
                   "TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed),
                   "TERNARY_TB_RECORD": str(record)}
            run_cocotb(text, "sdram_matvec", "sim.tb_sdram_matvec", Path(tmp) / f"{shape}-{fmt}",
                       extra_env=env, testcase="a_large_layer_streams_near_the_memorys_rate", seed=seed)
            rec = json.loads(record.read_text().splitlines()[-1])
            bytes_per_cycle = geometry.data_width // 8
            ratio = rec["sdram_words"] / rec["cycles"]
            rows.append({"engine": shape, "format": fmt, "macs": r * c, **rec,
                         "of_bound": round(ratio, 3),
                         "mb_per_s": round(ratio * bytes_per_cycle * CLK_FREQ / 1e6, 1)})
    return {"clock_mhz": CLK_FREQ / 1e6, "rate": "1:2", "rows": rows, "models": project(rows)}


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


def table(result):
    lines = [f"SDRAM-fed matvec, controller at {result['clock_mhz']:g} MHz ({result['rate']}), "
             "a 512x512 layer:",
             "| engine | format | MACs | SDRAM words | cycles | of the SDRAM bound | MB/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['engine']} | {r['format']} | {r['macs']} | {r['sdram_words']:,} | "
                     f"{r['cycles']:,.0f} | {r['of_bound']} | {r['mb_per_s']} |")
    lines += ["", "projected (weights + int8 lm_head at the measured rate):",
              "| model | format | MB a token | tokens/s |", "| --- | --- | --- | --- |"]
    for p in result["models"]:
        lines.append(f"| {p['model']} | {p['format']} | {p['mb_per_token']} | {p['tokens_per_s']} |")
    return "\n".join(lines)
