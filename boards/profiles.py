"""What the host needs to know of each supported board: the engine it carries, its
clock target, its UART rate and, where it runs the whole decode step, the vector machine's
limits. The board builds (boards/) and the simulated board
(sim/) are made from the same entries, so the simulated board runs the RTL a board has.
"""

from dataclasses import dataclass, replace

from ternary_core.engine_config import EngineConfig
from ternary_core.errors import TernaryError
from ternary_core.model.config import BitNetConfig
from ternary_core.offload.limits import DEFAULT_ENGINE, LIN_SCALE_WORDS, DeviceLimits, vmem_regions


# A board's builds: the matvec engine alone, with the vector machine, and with the vector
# machine streaming from the SDRAM: each one's name after the board's (its folder
# build/NAME..., its report boards/reports/NAME....json) and its target clock's field.
BUILDS = {"matvec": ("", "clock_hz"), "model": ("-model", "vm_clock_hz"),
          "model-sdram": ("-model-sdram", "vm_sdram_clock_hz")}


def build_kind(offload, sdram):
    """The :data:`BUILDS` key of ``--offload OFFLOAD`` with or without ``--sdram``."""
    return "model-sdram" if sdram else offload


@dataclass(frozen=True)
class BoardProfile:
    name: str
    engine: EngineConfig
    clock_hz: int          # target clock of the engine
    baud: int              # UART rate on the board's USB serial bridge
    weight_memory: str     # "spram" or "bram"
    # The vector machine's limits (ternary_core.offload.limits.DeviceLimits) where the board
    # runs the whole decode step (model offload); None: a matvec-only device.
    vm_limits: object = None
    vm_clock_hz: int = None  # target clock of a build that carries the vector machine
    # The limits of the board's build that streams a model from its SDRAM (issue 20), for
    # a model the on-chip build cannot hold; None: the board has no such build.
    vm_sdram_limits: object = None
    vm_sdram_clock_hz: int = None  # target clock of that build's device (sync)
    # that build's matvec engine (None: ``engine``'s array)
    sdram_engine: object = None

    def build_name(self, kind):
        """The name of the board's build ``kind`` (a :data:`BUILDS` key): ``ulx3s-85f-model``."""
        return self.name + BUILDS[kind][0]

    def build_clock_hz(self, kind):
        """The target clock of the board's build ``kind``."""
        return getattr(self, BUILDS[kind][1])

    def vm_engine(self, limits):
        """The engine of the board's build with the vector machine of ``limits``: its
        weight store and buffers as the limits say."""
        base = self.sdram_engine if limits.sdram and self.sdram_engine else self.engine
        return replace(base, weight_words=limits.weight_words, max_m=limits.max_m,
                       max_k=limits.max_k)

    def limits_for(self, config, context=None):
        """The vector machine's limits of the build that runs ``config``: the on-chip
        build's if the model fits it, else the SDRAM build's (where the board has one)."""
        from ternary_core.offload.memory_map import MemoryMap

        if self.vm_sdram_limits is None:
            return self.vm_limits
        try:
            MemoryMap(config, context or config.max_position_embeddings, self.vm_limits,
                      self.engine, sdram=False)
            return self.vm_limits
        except TernaryError:
            return self.vm_sdram_limits

    @property
    def link_bytes_per_s(self):
        return self.baud / 10  # 8N1: ten bits a byte


# The shipped model's 589,824 trits in 16x16 tiles: the weight store of the build with the
# vector machine, whose block RAM also holds the rest of the model.
MODEL_WEIGHT_WORDS = 2304
# The ULX3S's SDRAM (32 MB, MT48LC16M16) in the ISA's 64-bit words: a machine whose limits
# have sdram_words (at most this) carries it, on the board (boards.tops.ULX3STop: the
# controller at 50 MHz, the SDRAM at 100, the device's sync at vm_clock_hz) and on the
# simulated board (LiteDRAM's model of the chip, clocked at the same ratio).
ULX3S_SDRAM_WORDS = (32 << 20) // 8
# The shipped model at its full context (DeviceLimits' defaults); its program has 1,015
# instructions.
ULX3S_85F_VM_LIMITS = DeviceLimits(prog_words=1024)
# The build that streams a model from the SDRAM, fitted to the 85F's block RAM (docs/sdram.md
# "Block RAM"; `python -m boards.bram_budget --sdram`): on chip, the activations of hidden
# 512 / FFN 1536 (VMEM's two-copy words; the vocabulary's logits and sampler weights in
# its single-copy bank), halves of a 64 KB weight store, 64 embedding / lm_head rows,
# one KV head's cache of 504 positions (with the 8 staging rows, 512 rows: two block RAMs
# deep), a PROG of 1,024 instructions through which the program streams. The layers are
# bounded by the 32 MB (MemoryMap.check names sdram_words), not by anything on chip.
_FITTED = BitNetConfig(hidden_size=512, intermediate_size=1536, num_attention_heads=8,
                       num_key_value_heads=8, vocab_size=8192)     # (head_dim 64)
_FITTED_CONTEXT, _FITTED_EMB_ROWS = 504, 64
ULX3S_85F_SDRAM_VM_LIMITS = DeviceLimits(
    hidden=512, layers=64, heads=16, kv_heads=8, head_dim=64, ffn=1536, vocab=8192,
    context=_FITTED_CONTEXT, prog_words=1024, max_m=1024, max_k=2048, weight_words=2048,
    sdram_words=ULX3S_SDRAM_WORDS, emb_rows=_FITTED_EMB_ROWS, kv_slots=1, vmem_single=2 * 8192,
    vmem_words=vmem_regions(_FITTED, _FITTED_CONTEXT, chunk=_FITTED_EMB_ROWS // 2, single_at=0,
                            lin_scales=2 * LIN_SCALE_WORDS)[1])
_ULX3S_ENGINE = DEFAULT_ENGINE
# The SDRAM build's engine: 16x8 (128 MACs). The SDRAM brings 25 trits a 30 MHz cycle, so
# the on-chip build's 16x16 array would wait for it nine tenths of the time; half of it costs 0.6 %
# more cycles a token (cost.overlapped_cycles, hidden-512 model) and takes half of its
# adder trees out of a build that was too congested to route (docs/sdram.md). 16 rows, not
# 8: the engine's result banks (max_m / rows deep, a bank a row) stay in LUT RAM; at 8
# rows they took 8 more DP16KD than the 85F has.
_ULX3S_SDRAM_ENGINE = replace(DEFAULT_ENGINE, rows=16, cols=8)

BOARDS = {
    # iCE40UP5K: four 16K x 16 SPRAMs = 64 bits a cycle = one 40-trit base-3 tile.
    # The link is the bound, so the clock is chosen for the FT2232H's rates: 36 MHz
    # (12 MHz x 3 from the PLL, exactly) makes its top rate, 12 Mbaud, at exactly 3
    # clocks per bit, which rtl.uart.UartRx samples within +-3.5% (the FT2232H makes
    # 12 Mbaud exactly, and two crystals differ by tens of ppm, not percent). 8 Mbaud
    # would need 24 or 48 MHz; 6 Mbaud would halve the link.
    # No register after the SPRAMs and two result slots: the fabric is nearly full.
    "icebreaker": BoardProfile(
        "icebreaker", EngineConfig(rows=4, cols=10, fmt="base3", max_m=1024, max_k=1024,
                                   weight_words=16384, fetch_register=False, result_slots=2),
        clock_hz=36_000_000, baud=12_000_000,
        weight_memory="spram"),
    # ECP5-85F: block RAM for the weights (4096 words of 512 bits = 256 KiB) and a
    # 256-MAC array; K = 128 and 256 fill its 16 columns and M = 64..256 its 16 rows
    # exactly. 100 MHz: every block RAM's output and address goes through a register
    # (the RAMs span the chip), and the MAC array's adder tree has a register after
    # every level. The FT231X tops out at 3 Mbaud: 33 clocks per bit make 3.03 Mbaud,
    # 1% fast, inside a UART receiver's usual tolerance (rtl.uart.UartRx takes +-5% at 33).
    # With the vector machine (model offload, `ternary build --offload model`), sized for
    # the shipped model at its full context (ULX3S_85F_VM_LIMITS), the
    # device targets a lower clock (vm_clock_hz: 25 MHz x 6/5 from the PLL, the fastest
    # PLL clock below its Fmax of 33.3 that makes 3 Mbaud within 1%: 10 clocks a bit);
    # its matvec commands still work. Its block RAM holds the full context: 206 of the
    # 208 DP16KD (docs/device-isa.md says how). The simulated ulx3s board always carries
    # the machine, at the full context.
    "ulx3s-85f": BoardProfile(
        "ulx3s-85f", _ULX3S_ENGINE, clock_hz=100_000_000, baud=3_000_000, weight_memory="bram",
        vm_limits=ULX3S_85F_VM_LIMITS.with_engine(replace(_ULX3S_ENGINE, weight_words=MODEL_WEIGHT_WORDS)),
        vm_clock_hz=30_000_000,
        vm_sdram_limits=ULX3S_85F_SDRAM_VM_LIMITS.with_engine(
            replace(_ULX3S_SDRAM_ENGINE, weight_words=2048, max_k=2048)),
        sdram_engine=_ULX3S_SDRAM_ENGINE,
        # The SDRAM build's device: 30 MHz, as the on-chip build's (from one VCO beside the
        # controller's 50 and 100, the PLL's feedback; 3 Mbaud at 10 clocks a bit). It
        # routed at 30.08 (nextpnr's static placer, router1, CONGESTED_SEED); first built
        # for 24 MHz, it made 30.04 there (docs/sdram.md, "The bitstream"). Its streams
        # keep the SDRAM's rate: the 64-bit port's peak at 30 MHz is 240 MB/s, the
        # SDRAM's 200.
        vm_sdram_clock_hz=30_000_000),
}


def board(name):
    if name not in BOARDS:
        raise TernaryError(f"unknown board {name!r}; known: {', '.join(sorted(BOARDS))}")
    return BOARDS[name]
