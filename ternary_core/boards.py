"""What the host needs to know of each supported board: the engine it carries, its
clock target and its UART rate. The board builds (boards/) and the simulated board
(sim/) are made from the same entries, so the simulated board runs the RTL a board has.
"""

from dataclasses import dataclass

from .engine_config import EngineConfig
from .errors import TernaryError
from .offload.isa import ULX3S_85F


@dataclass(frozen=True)
class BoardProfile:
    name: str
    engine: EngineConfig
    clock_hz: int          # target clock of the engine
    baud: int              # UART rate on the board's USB serial bridge
    weight_memory: str     # "spram" or "bram"
    # The vector machine's limits (ternary_core.offload.isa.DeviceLimits) where the board
    # runs the whole decode step (model offload); None: a matvec-only device.
    vm_limits: object = None

    @property
    def link_bytes_per_s(self):
        return self.baud / 10  # 8N1: ten bits a byte


_ULX3S_ENGINE = EngineConfig(rows=16, cols=16, fmt="2bit", max_m=1024, max_k=1024, weight_words=4096)

BOARDS = {
    # iCE40UP5K: four 16K x 16 SPRAMs = 64 bits a cycle = one 40-trit base-3 tile.
    # The link is the bound, so the clock is chosen for the FT2232H's rates: 24 MHz
    # makes 8 Mbaud (12M/1.5) at exactly 3 clocks per bit (rtl.uart.UartRx: +-3.5%).
    # 12 Mbaud would need 36 MHz, which this build does not reach (30.2 MHz: the command
    # engine's request checks are the longest path); 6 Mbaud would halve the link.
    # No register after the SPRAMs and two result slots: the fabric is nearly full.
    "icebreaker": BoardProfile(
        "icebreaker", EngineConfig(rows=4, cols=10, fmt="base3", max_m=1024, max_k=1024,
                                   weight_words=16384, fetch_register=False, result_slots=2),
        clock_hz=24_000_000, baud=8_000_000,
        weight_memory="spram"),
    # ECP5-85F: block RAM for the weights (4096 words of 512 bits = 256 KiB) and a
    # 256-MAC array; K = 128 and 256 fill its 16 columns and M = 64..256 its 16 rows
    # exactly. 75 MHz: builds at a 100 MHz target reached 85-88 MHz (the longest paths
    # are block RAM outputs crossing the chip: results-memory reads, the frame buffer).
    # The FT231X tops out at 3 Mbaud (75 MHz / 25 exactly).
    # It carries the vector machine (model offload), sized for the shipped model at its
    # full context (ternary_core.offload.isa.ULX3S_85F); its matvec commands still work.
    "ulx3s-85f": BoardProfile(
        "ulx3s-85f", _ULX3S_ENGINE, clock_hz=75_000_000, baud=3_000_000, weight_memory="bram",
        vm_limits=ULX3S_85F.with_engine(_ULX3S_ENGINE)),
}


def board(name):
    if name not in BOARDS:
        raise TernaryError(f"unknown board {name!r}; known: {', '.join(sorted(BOARDS))}")
    return BOARDS[name]
