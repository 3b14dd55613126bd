"""cocotb: the device's frame parser survives a long run of random bytes."""

from amaranth.back import verilog

from rtl.device import DeviceCore
from sim.cocotb_run import run_cocotb
from sim.export import config_to_env, with_header
from ternary_core.engine_config import EngineConfig

CFG = EngineConfig(rows=4, cols=10, fmt="base3", max_m=64, max_k=128, weight_words=512)


def test_parser_survives_random_bytes_and_answers_info(tmp_path, seed):
    text = with_header(verilog.convert(DeviceCore(CFG, max_payload=512, timeout=5000),
                                       name="device_core", emit_src=False))
    s = seed % (1 << 31)
    print(f"TERNARY_TB_SEED={s}")
    run_cocotb(text, "device_core", "sim.tb_device", tmp_path / "dev",
               extra_env={"TERNARY_TB_CONFIG": config_to_env(CFG), "TERNARY_TB_SEED": str(s),
                          "TERNARY_TB_NOISE_BYTES": "30000", "TERNARY_TB_MAX_PAYLOAD": "512"})
