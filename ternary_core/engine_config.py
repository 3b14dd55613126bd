"""Parameters of one engine instance, shared by the RTL generator and the host.

The RTL is built from an :class:`EngineConfig`; the device reports it in its INFO
reply, and the host rebuilds the same object from that reply to pack weights.
"""

from dataclasses import dataclass

from .checks import positive_int
from .errors import TernaryError
from .golden import accumulator_bits
from .formats.native import TileLayout

# Upper bounds from the largest supported board, the ULX3S-85F (ECP5 LFE5U-85F), checked
# before any hardware is elaborated: a design past them fits no board, and elaborating
# it takes gigabytes and minutes (a 64x64 array, 2**20 weight words).
# Its 208 DP16KD block RAMs hold 2 KiB of data each (parity bits unused).
MAX_MEMORY_BYTES = 208 * 2048
# Its 83,640 LUTs; the 8x16 2-bit build takes 10,599 LUTs for 128 MACs (83 a MAC, in
# boards/reports/ulx3s-85f.json), so about 1,000 MACs fill it.
MAX_MACS = 1024


@dataclass(frozen=True)
class EngineConfig:
    """``rows x cols`` ternary MACs, weight format, largest matvec, weight memory depth.

    ``weight_words`` is the depth of the weight store in words; a word is one tile
    of ``rows*cols`` trits (see :mod:`ternary_core.formats.native`).

    ``fetch_register``, ``result_slots`` and ``adder_levels_per_stage`` (adder levels
    between the MAC array's registers, :class:`rtl.mac_array.TernaryMacArray`) shape the
    engine's pipeline for a board's clock and fabric (see
    :class:`rtl.matvec_engine.MatvecEngine`); they change no
    result, and the cycles only where ``ceil(K/cols)`` is below the engine's
    ``full_rate_k_tiles``. They are not in the INFO reply, which the host needs no
    more than the rest for. They live here so that a board and its simulated board
    are built from one description.

    ``act_lutram`` marks the activation buffer for LUT RAM (``ram_style =
    "distributed"``), a vendor choice that plain Verilog for other flows must not carry
    (an iCE40 has no LUT RAM): the ULX3S asks for it, because with ``fetch_register``
    Yosys would otherwise fold the register after the buffer's read into a block RAM.
    """

    rows: int = 4
    cols: int = 8
    fmt: str = "2bit"
    max_m: int = 1024
    max_k: int = 1024
    weight_words: int = 4096
    fetch_register: bool = True
    result_slots: int = 4
    adder_levels_per_stage: int = 2
    act_lutram: bool = False

    def __post_init__(self):
        for name in ("rows", "cols", "max_m", "max_k", "weight_words", "adder_levels_per_stage"):
            positive_int(name, getattr(self, name))
        self.layout  # validates rows*cols against the format
        if self.max_m > 65535 or self.max_k > 65535:
            raise TernaryError("max_m and max_k must be at most 65535 (16-bit command fields)")
        if self.weight_words > 1 << 24:
            raise TernaryError("weight_words must be at most 2**24 (24-bit word addresses)")
        if self.rows * self.cols > MAX_MACS:
            raise TernaryError(f"rows x cols: {self.rows}x{self.cols} = {self.rows * self.cols} MACs is "
                               f"more than the {MAX_MACS} the largest supported board (ULX3S-85F) holds")
        memory = {"weight_words": self.weight_words * self.word_bytes, "max_k": self.max_k,
                  "max_m": self.max_m * self.result_bytes}
        if sum(memory.values()) > MAX_MEMORY_BYTES:
            worst = max(memory, key=memory.get)
            raise TernaryError(
                f"{worst}: the engine's memories need {sum(memory.values()):,} bytes (weights "
                f"{memory['weight_words']:,}, activations {memory['max_k']:,}, results "
                f"{memory['max_m']:,}), more than the {MAX_MEMORY_BYTES:,} bytes of block RAM of "
                f"the largest supported board (ULX3S-85F)")

    @property
    def layout(self):
        return TileLayout(self.rows, self.cols, self.fmt)

    @property
    def word_bytes(self):
        return self.layout.word_bytes

    @property
    def acc_bits(self):
        return accumulator_bits(self.max_k)

    @property
    def act_words(self):
        return -(-self.max_k // self.cols)

    @property
    def result_bytes(self):
        """Bytes per result on the link: the accumulator, sign-extended to whole bytes."""
        return -(-self.acc_bits // 8)

    @property
    def weight_bytes(self):
        return self.weight_words * self.word_bytes

    def check_shape(self, m, k):
        """Raise a clear error if an ``m x k`` matvec does not fit this engine."""
        if not 1 <= m <= self.max_m:
            raise TernaryError(f"M={m} is outside 1..{self.max_m} (the engine's max_m)")
        if not 1 <= k <= self.max_k:
            raise TernaryError(f"K={k} is outside 1..{self.max_k} (the engine's max_k)")
