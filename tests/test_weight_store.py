"""The weight store's implementations seen through the bus (Amaranth simulator): words
written a byte at a time as the command engine writes them (byte 0 first), read back a
cycle after their address, against a Python model of the store."""

import pytest

from rtl.weight_store import WeightStore
from tests.amaranth_helpers import run


def model_write(store, addr, data, word_bytes, impl):
    """What the store holds after a write of ``data`` from byte 0 of word ``addr``."""
    for i, b in enumerate(data):
        a, lane = addr + i // word_bytes, i % word_bytes
        word = bytearray(store[a].to_bytes(word_bytes, "little"))
        if impl == "packed" and lane == 0:   # a word's byte 0 starts it afresh
            word = bytearray(word_bytes)
        word[lane] = b
        store[a] = int.from_bytes(word, "little")


@pytest.mark.parametrize("impl, depth", [("generic", 11), ("packed", 11), ("packed", 16),
                                         ("packed", 36)])
def test_store_reads_back_what_was_written(impl, depth, rng):
    word_bytes = 4
    dut = WeightStore(depth, word_bytes, impl=impl)
    store = [0] * depth
    writes = []
    for _ in range(12):     # whole words and writes that end in the middle of a word
        addr = int(rng.integers(depth))
        n = int(rng.integers(1, (depth - addr) * word_bytes + 1))
        writes.append((addr, [int(b) for b in rng.integers(0, 256, n)]))

    async def tb(ctx):
        for addr, data in writes:
            for i, b in enumerate(data):
                lane = i % word_bytes
                ctx.set(dut.bus.addr, addr + i // word_bytes)
                ctx.set(dut.bus.wdata, b * int("01" * word_bytes, 16))
                ctx.set(dut.bus.wmask, 1 << lane)
                await ctx.tick()
            ctx.set(dut.bus.wmask, 0)
            model_write(store, addr, data, word_bytes, impl)
            for a in rng.permutation(depth):
                ctx.set(dut.bus.addr, int(a))
                await ctx.tick()
                assert ctx.get(dut.bus.rdata) == store[a], (impl, addr, len(data), int(a))
    run(dut, tb)

