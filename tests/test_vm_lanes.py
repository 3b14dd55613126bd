"""The VM's int8 lanes (rtl/vm/lanes.py): DOT sums and AXPY accumulators bit-exact
against numpy's integer products, over random and extreme bytes."""

import numpy as np
from amaranth.sim import Simulator

from rtl.vm.lanes import DotAxpyLanes


def run_lanes(dut, beats):
    """``beats``: dicts of a, w, b, first, axpy; returns (dot, acc) after each beat."""
    out = []

    async def tb(ctx):
        for bt in beats:
            ctx.set(dut.en, 1)
            ctx.set(dut.axpy, bt["axpy"])
            ctx.set(dut.first, bt["first"])
            ctx.set(dut.a, [int(v) for v in bt["a"]])
            ctx.set(dut.w, int(bt["w"]))
            ctx.set(dut.b, [int(v) for v in bt["b"]])
            await ctx.tick()
        ctx.set(dut.en, 0)
        await ctx.tick()
        await ctx.tick()
        out.append((ctx.get(dut.dot), [ctx.get(dut.acc[j]) for j in range(dut.lanes)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out[0]


def test_dot_sums_products_over_beats(rng):
    dut = DotAxpyLanes(32)
    n = 5
    a = rng.integers(-128, 128, (n, 32))
    b = rng.integers(-128, 128, (n, 32))
    a[0], b[0] = -128, -128                  # the largest product, every lane
    beats = [{"a": a[i], "b": b[i], "w": 0, "first": i == 0, "axpy": 0} for i in range(n)]
    dot, _ = run_lanes(dut, beats)
    assert dot == int((a.astype(np.int64) * b).sum())


def test_axpy_accumulates_per_lane(rng):
    dut = DotAxpyLanes(32)
    n = 6
    w = rng.integers(0, 1 << 16, n)
    w[0] = (1 << 16) - 1
    v = rng.integers(-128, 128, (n, 32))
    v[0] = -128
    beats = [{"a": np.zeros(32, int), "b": v[i], "w": w[i], "first": i == 0, "axpy": 1}
             for i in range(n)]
    _, acc = run_lanes(dut, beats)
    assert acc == [int(x) for x in (w[:, None].astype(np.int64) * v).sum(axis=0)]
