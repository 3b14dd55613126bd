"""boards.bram_budget: the memories of a whole-model build, each synthesized alone."""

from boards.bram_budget import budget, memory_blocks
from rtl.vm.datapath import MEMORIES, memory_kwargs
from rtl.vm.memories import SpaceMemory
from ternary_core.offload.isa import SPACES, Space
from tests.vm_helpers import small_engine, small_limits


def test_tmem_is_one_copy_without_sdram_and_two_with_its_transfer_port():
    """TMEM's uploads share its first read port (one copy of 2,048 x 16 bits: two
    DP16KD); with SDRAM the transfers write it on a port of their own, so its two reads
    need two copies (four)."""
    for sdram, want in ((0, 2), (1 << 10, 4)):
        kw = memory_kwargs(small_limits(sdram_words=sdram))[Space.TMEM]
        mem = SpaceMemory(SPACES[Space.TMEM].word_bits, 2048, name="TMEM", **kw)
        assert memory_blocks(mem) == (want, 0), sdram


def test_the_budget_names_every_space_and_the_weight_store():
    lim = small_limits(vmem_words=64, context=8, vocab=16, hidden=32, ffn=32)
    rows = budget(lim, small_engine(lim), log=open("/dev/null", "w"))
    assert [r[0] for r in rows] == [s.name for s in MEMORIES] + ["weight store"]
    assert all(r[1] == lim.depth(Space[r[0]]) for r in rows[:-1])


def test_tokens_and_cycles_are_lut_ram_on_chip_and_block_ram_with_sdram():
    """The on-chip build's block RAM is full, so the small TOKENS and CYCLES are LUT RAM
    there; the SDRAM build has the block RAM and not the routing for them."""
    for sdram in (0, 1 << 10):
        kws = memory_kwargs(small_limits(sdram_words=sdram))
        for sp in (Space.TOKENS, Space.CYCLES):
            mem = SpaceMemory(SPACES[sp].word_bits, 256, name=sp.name, **kws[sp])
            bram, lutram = memory_blocks(mem)
            assert (bram > 0, lutram > 0) == ((True, False) if sdram else (False, True)), \
                (sp, sdram, bram, lutram)
