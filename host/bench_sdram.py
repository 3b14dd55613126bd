"""`ternary bench --sdram`: the matvec engine fed from the ULX3S SDRAM, measured.

For each engine, a 512x512 layer is written into LiteDRAM's SDRAM model and multiplied
with the layer streamed in one burst (sim/tb_sdram_matvec.py under Verilator, the
controller at half rate: 50 MHz, a 32-bit port, the SDRAM at 100 MHz): its cycles against
the port's peak (its words at one a cycle), and what that rate makes of a token of the
issue-20 model shapes (bytes a token: ternary weights plus the int8 lm_head). Then the
same with the engine at the device's 30 MHz, the controller at 50 MHz in its own clock
domain (LiteDRAM's clock-domain crossing): on a 32-bit port (bound by the port: a word a
30 MHz cycle) and on a 64-bit one (bound by the SDRAM).
"""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

CLK_FREQ = 50e6     # the controller's
# (engine, format, the engine's clock, the port's bits); the engine's clock None: the
# controller's, one domain
ENGINES = (("2x8", "2bit", None, 32), ("4x8", "2bit", None, 32), ("2x10", "base3", None, 32),
           ("2x8", "2bit", 30e6, 32), ("4x8", "2bit", 30e6, 64))
# (name, hidden, layers, ffn, heads, kv heads, vocab): issue 20's shapes
MODEL_SHAPES = (("hidden 512 / 8 layers / FFN 1376 / vocab 8192", 512, 8, 1376, 8, 4, 8192),
                ("hidden 768 / 12 layers / FFN 2048 / vocab 8192", 768, 12, 2048, 12, 6, 8192))


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
    return "\n".join(lines)
