"""The SDRAM path: LiteDRAM's SDR controller, generated at build time, under Verilator
with LiteDRAM's SDRAM model and its timing checker (cocotb)."""

import dataclasses
import json

import pytest

from rtl.sdram.controller import LiteDramCore, SdramStreams
from sim.cocotb_run import run_cocotb
from sim.export import SDRAM_DOMAIN, sdram_verilog

# Full rate: controller and SDRAM at 100 MHz, 16-bit port. Half rate: the controller at
# 50 MHz with a 32-bit port, the SDRAM at 100 MHz (two commands' phases a cycle).
RATES = {"1:1": 100e6, "1:2": 50e6}


def _run(tmp_path, seed, rate="1:1", user_hz=(), **core_args):
    """SdramStreams on the model core. With ``user_hz`` (frequencies) the controller runs in
    its own domain (``sdram_clk``) and the streams at each of them in turn, on one build."""
    core = LiteDramCore(variant="model", clk_freq=RATES[rate], rate=rate,
                        controller_domain=SDRAM_DOMAIN if user_hz else "sync", **core_args)
    text = sdram_verilog(SdramStreams, core, "sdram_tb")
    for hz in user_hz or [None]:
        env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(core.geometry)),
               "TERNARY_TB_SEED": str(seed), "TERNARY_TB_USER_HZ": str(hz or ""),
               "TERNARY_TB_EXPECT_VIOLATION": "1" if core_args.get("controller_timings") else "0"}
        run_cocotb(text, "sdram_tb", "sim.tb_sdram", tmp_path / "sdram", extra_env=env, seed=seed)


@pytest.mark.parametrize("rate", sorted(RATES))
def test_sdram_streams_read_back_bursts_within_the_memorys_timing(rate, tmp_path, seed):
    seed = seed % (1 << 31)
    print(f"SDRAM bursts at {rate}: TERNARY_TB_SEED={seed}")
    _run(tmp_path, seed, rate)


# The device's clock (30 MHz), one equal to the controller's (50 MHz) but unrelated in
# phase, a much slower one and a faster one; none a multiple of the controller's period
# (33,334, 20,000, 83,334 and 12,500 ps in simulation against 20,000).
USER_CLOCKS = (30e6, 50e6, 12e6, 80e6)


@pytest.mark.parametrize("port_bits", [32, 64])
def test_sdram_streams_cross_into_a_user_clock_domain(port_bits, tmp_path, seed):
    """The controller at 50 MHz (half rate), the streams at each of USER_CLOCKS through
    LiteDRAM's clock-domain crossing, the two resets released in an order the seed picks:
    random bursts read back bit-exactly, no timing violation, and the sequential rate
    (printed) above half the port's peak: a 32-bit port at 30 MHz is port-bound (one word a
    cycle, 120 MB/s), a 64-bit one SDRAM-bound (188 MB/s). About a minute each (one build,
    four runs)."""
    seed = seed % (1 << 31)
    print(f"SDRAM bursts across clock domains, {port_bits}-bit port: TERNARY_TB_SEED={seed}")
    _run(tmp_path, seed, "1:2", user_hz=USER_CLOCKS, port_data_width=port_bits)


def test_sdram_timing_checker_catches_a_controller_with_wrong_timings(tmp_path, seed):
    seed = seed % (1 << 31)
    print(f"SDRAM wrong timings: TERNARY_TB_SEED={seed}")
    _run(tmp_path, seed, controller_timings={"tRP": 1, "tRCD": 1, "tRFC": 1})


STREAMED_ENGINES = {"2x8-2bit": dict(rows=2, cols=8, fmt="2bit"),      # 32-bit tiles: one SDRAM word
                    "4x8-2bit": dict(rows=4, cols=8, fmt="2bit"),      # 64-bit tiles: two
                    "2x10-base3": dict(rows=2, cols=10, fmt="base3")}  # 20 trits in 32 bits


@pytest.mark.parametrize("engine", sorted(STREAMED_ENGINES))
def test_matvec_engine_fed_from_sdram_matches_golden(engine, tmp_path, seed):
    from sim.export import config_to_env, sdram_matvec_verilog
    from ternary_core.engine_config import EngineConfig

    seed = seed % (1 << 31)
    print(f"SDRAM-fed matvec {engine}: TERNARY_TB_SEED={seed}")
    cfg = EngineConfig(**STREAMED_ENGINES[engine], max_m=512, max_k=512, weight_words=16)
    text, geometry = sdram_matvec_verilog(cfg, rate="1:2", clk_freq=RATES["1:2"])
    env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(geometry)),
           "TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed)}
    run_cocotb(text, "sdram_matvec", "sim.tb_sdram_matvec", tmp_path / "mv", extra_env=env, seed=seed)


def test_matvec_engine_fed_from_sdram_across_clock_domains(tmp_path, seed):
    """The 4x8 2-bit engine (64-bit tiles) at 30 and at 50 MHz on a 64-bit port, the
    controller at 50 MHz: bit-exact to the golden model, and a 512x512 layer's rate
    (printed) within half the port's peak. About a minute."""
    from sim.export import config_to_env, sdram_matvec_verilog
    from ternary_core.engine_config import EngineConfig

    seed = seed % (1 << 31)
    print(f"SDRAM-fed matvec across clock domains: TERNARY_TB_SEED={seed}")
    cfg = EngineConfig(**STREAMED_ENGINES["4x8-2bit"], max_m=512, max_k=512, weight_words=16)
    text, geometry = sdram_matvec_verilog(cfg, rate="1:2", clk_freq=RATES["1:2"], two_clocks=True,
                                          port_data_width=64)
    for hz in USER_CLOCKS[:2]:
        env = {"TERNARY_TB_SDRAM": json.dumps(dataclasses.asdict(geometry)),
               "TERNARY_TB_CONFIG": config_to_env(cfg), "TERNARY_TB_SEED": str(seed),
               "TERNARY_TB_USER_HZ": str(hz)}
        run_cocotb(text, "sdram_matvec", "sim.tb_sdram_matvec", tmp_path / "mv", extra_env=env, seed=seed)


@pytest.mark.parametrize("module, rate, size, width", [
    ("MT48LC16M16", "1:1", 32 << 20, 16), ("MT48LC16M16", "1:2", 32 << 20, 32),
    ("AS4C32M16", "1:2", 64 << 20, 32)])
def test_generated_core_states_its_geometry(module, rate, size, width):
    from rtl.sdram.litedram_core import litedram_verilog

    text, ports, g = litedram_verilog(variant="model", module=module, rate=rate, clk_freq=50e6)
    assert g.size_bytes == size and g.data_width == width
    assert (1 << g.address_width) * width // 8 == size     # the port addresses every word
    assert ports["cmd_addr"] == (g.address_width, "i") and ports["rdata_data"] == (width, "o")
    assert "module litedram_sdr" in text and ports["timing_violation"] == (1, "o")
    assert "user_clk" not in ports and not g.user_domain and g.controller_data_width == width


@pytest.mark.parametrize("port_bits", [32, 64, 128])
def test_a_core_with_its_port_in_a_second_clock_domain_states_it(port_bits):
    from rtl.sdram.litedram_core import litedram_verilog

    text, ports, g = litedram_verilog(variant="model", rate="1:2", clk_freq=50e6, user_domain=True,
                                      port_data_width=port_bits)
    assert ports["user_clk"] == ports["user_rst"] == ports["sys_clk"] == (1, "i")
    assert g.user_domain and g.data_width == port_bits and g.controller_data_width == 32
    assert (1 << g.address_width) * port_bits // 8 == g.size_bytes == 32 << 20
    assert ports["rdata_data"] == (port_bits, "o") and ports["wdata_we"] == (port_bits // 8, "i")
    # the port's side of LiteDRAM's crossing runs on user_clk
    assert "posedge user_clk" in text and "cdc" in text


def test_core_parameters_are_checked_before_generation():
    from rtl.sdram.litedram_core import litedram_verilog

    with pytest.raises(ValueError, match="variant must be one of board, model, not 'fpga'"):
        litedram_verilog(variant="fpga")
    with pytest.raises(ValueError, match="SDRAM module must be one of MT48LC16M16, AS4C32M16, not 'X'"):
        litedram_verilog(module="X")
    with pytest.raises(ValueError, match="pins must be given for the board variant, and only for it"):
        LiteDramCore(variant="board")
    with pytest.raises(ValueError, match="rate must be"):
        litedram_verilog(rate="2:1")
    with pytest.raises(ValueError, match=r"port data width must be the controller's \(32 bits\) "
                                         r"times a power of two, not 96"):
        litedram_verilog(rate="1:2", port_data_width=96, user_domain=True)
    with pytest.raises(ValueError, match=r"port data width must be the controller's \(16 bits\) "
                                         r"times a power of two, not 8"):
        litedram_verilog(rate="1:1", port_data_width=8, user_domain=True)
    with pytest.raises(ValueError, match=r"a port wider than the controller's word \(32 bits\) "
                                         "needs user_domain"):
        litedram_verilog(rate="1:2", port_data_width=64)
    with pytest.raises(TypeError, match="controller_domain must be a clock domain's name, not 3"):
        LiteDramCore(controller_domain=3)


def test_streams_keep_no_more_reads_in_flight_than_the_crossing_holds():
    from rtl.sdram.litedram_core import CDC_RDATA_DEPTH

    core = LiteDramCore(rate="1:2", controller_domain="sdram")
    SdramStreams(core, read_fifo_depth=CDC_RDATA_DEPTH)
    with pytest.raises(ValueError, match=f"read_fifo_depth must be at most {CDC_RDATA_DEPTH} "
                                         r"\(the clock-domain crossing's read FIFO\), not 64"):
        SdramStreams(core, read_fifo_depth=64)
