"""Fast Amaranth-simulator tests of the decoder, the MAC array and the engine."""

import numpy as np
import pytest

from rtl.decoder import WeightDecoder
from rtl.mac_array import TernaryMacArray
from rtl.matvec_engine import MatvecEngine
from ternary_core.engine_config import EngineConfig
from ternary_core.golden import matvec
from ternary_core.native import TileLayout
from tests.amaranth_helpers import packed_words, run, stream_recv, stream_send, write_acts, write_words
from tests.helpers import random_int8, random_trits


@pytest.mark.parametrize("impl", ["arith", "rom"])
def test_base3_decoder_emits_five_trits_per_byte(impl, rng):
    layout = TileLayout(1, 5, "base3")
    dut = WeightDecoder(layout, base3_impl=impl)
    codes = np.array(np.meshgrid(*[[-1, 0, 1]] * 5, indexing="ij")).reshape(5, -1).T

    async def tb(ctx):
        for trits in codes:
            byte = layout.pack(trits.reshape(1, 5))
            ctx.set(dut.word, int(byte[0]))
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


def test_mac_array_sums_rows_including_extremes(rng):
    dut = TernaryMacArray(3, 8)
    cases = [(random_trits(rng, 3, 8), random_int8(rng, 8)) for _ in range(40)]
    cases.append((np.full((3, 8), -1, np.int8), np.full(8, -128, np.int8)))
    cases.append((np.ones((3, 8), np.int8), np.full(8, -128, np.int8)))

    async def tb(ctx):
        for w, x in cases:
            for i, t in enumerate(w.reshape(-1)):
                ctx.set(dut.trits[i], int(t))
            for i, a in enumerate(x):
                ctx.set(dut.acts[i], int(a))
            await ctx.delay(1e-9)
            assert [ctx.get(dut.sums[r]) for r in range(3)] == matvec(w, x).tolist()
    run(dut, tb)


def run_engine(cfg, layers, jobs, *, result_stall=0.0, rng=None):
    """Load ``layers`` ({base: W}), run ``jobs`` [(base, x)], return results and cycles."""
    dut = MatvecEngine(cfg)
    out = []

    async def tb(ctx):
        for base, w in layers.items():
            await write_words(ctx, dut.weights, base, packed_words(cfg.layout, w))
        for base, x in jobs:
            w = layers[base]
            await write_acts(ctx, dut.acts, x, cfg.cols)
            await stream_send(ctx, dut.cmd, {"base": base, "m": w.shape[0], "k": w.shape[1]})
            vals = []
            while True:
                if rng is not None and rng.random() < result_stall:
                    await ctx.tick()
                    continue
                p = await stream_recv(ctx, dut.result)
                vals.append(p.value)
                if p.last:
                    break
            await ctx.tick()
            out.append((np.array(vals), ctx.get(dut.cycles)))
    run(dut, tb)
    return out


@pytest.mark.parametrize("rows, cols, fmt", [(4, 8, "2bit"), (4, 10, "base3"), (3, 5, "base3")])
def test_engine_matches_golden_on_two_layers(rows, cols, fmt, rng):
    cfg = EngineConfig(rows=rows, cols=cols, fmt=fmt, max_m=64, max_k=96, weight_words=512)
    w1, w2 = random_trits(rng, 13, 37), random_trits(rng, 9, 96)
    base2 = cfg.layout.words(13, 37)
    x1, x2 = random_int8(rng, 37), random_int8(rng, 96)
    res = run_engine(cfg, {0: w1, base2: w2}, [(0, x1), (base2, x2), (0, x1)],
                     result_stall=0.3, rng=rng)
    np.testing.assert_array_equal(res[0][0], matvec(w1, x1))
    np.testing.assert_array_equal(res[1][0], matvec(w2, x2))
    np.testing.assert_array_equal(res[2][0], matvec(w1, x1))
