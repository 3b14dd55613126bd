"""The packed-weight decoder (rtl/decoder.py): tiles to trits, 2-bit and base-3."""

import numpy as np
import pytest

from rtl.decoder import WeightDecoder
from ternary_core.formats.native import TileLayout
from tests.amaranth_helpers import run
from tests.helpers import random_trits


@pytest.mark.parametrize("impl, latency", [("arith", 0), ("rom", 0), ("bram", 1)])
def test_base3_decoder_emits_five_trits_per_byte(impl, latency, rng):
    layout = TileLayout(1, 5, "base3")
    dut = WeightDecoder(layout, base3_impl=impl)
    assert dut.latency == latency
    codes = np.array(np.meshgrid(*[[-1, 0, 1]] * 5, indexing="ij")).reshape(5, -1).T

    async def tb(ctx):
        for trits in codes:
            byte = layout.pack(trits.reshape(1, 5))
            ctx.set(dut.word, int(byte[0]))
            if latency:  # the block-RAM table: the trits follow the clock edge
                await ctx.tick()
            else:
                await ctx.delay(1e-9)
            assert [ctx.get(dut.trits[i]) for i in range(5)] == trits.tolist(), byte
    run(dut, tb)


def test_2bit_decoder_emits_a_tile_row_major(rng):
    layout = TileLayout(2, 4, "2bit")
    dut = WeightDecoder(layout)
    tiles = [random_trits(rng, 2, 4) for _ in range(50)]

    async def tb(ctx):
        for t in tiles:
            ctx.set(dut.word, int.from_bytes(layout.pack(t).tobytes(), "little"))
            await ctx.delay(1e-9)
            assert [ctx.get(dut.trits[i]) for i in range(8)] == t.reshape(-1).tolist()
    run(dut, tb)
