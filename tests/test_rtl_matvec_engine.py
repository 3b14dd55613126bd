"""The matvec engine (rtl/matvec_engine.py) against the golden model: results, cycles,
result slots and command ordering."""

import numpy as np
import pytest

from rtl.matvec_engine import MatvecEngine
from ternary_core.engine_config import EngineConfig
from ternary_core.golden import ideal_cycles, matvec
from tests.amaranth_helpers import packed_words, run, stream_send, write_acts, write_words
from tests.helpers import random_int8, random_trits


async def recv_tiles(ctx, dut, *, stall=0.0, rng=None):
    """Take result tiles until one marked ``last``; return the results and the cycles
    waited (each ready cycle and each withheld cycle counts one)."""
    vals, n = [], 0
    while True:
        n += 1
        if rng is not None and rng.random() < stall:
            ctx.set(dut.result.ready, 0)
            await ctx.tick()
            continue
        ctx.set(dut.result.ready, 1)
        _, _, valid, p = await ctx.tick().sample(dut.result.valid, dut.result.payload)
        if valid:
            vals.extend(p.values[i] for i in range(p.count))
            if p.last:
                ctx.set(dut.result.ready, 0)
                return np.array(vals), n


def run_engine(cfg, layers, jobs, *, result_stall=0.0, rng=None, weight_store="generic", base3_impl="arith"):
    """Load ``layers`` ({base: W}), run ``jobs`` [(base, x)] one after another; return
    per job the results, the ``cycles`` port and the cycles from the command's
    handshake to its last result's."""
    dut = MatvecEngine(cfg, weight_store=weight_store, base3_impl=base3_impl)
    out = []

    async def tb(ctx):
        for base, w in layers.items():
            await write_words(ctx, dut.weights, base, packed_words(cfg.layout, w))
        for base, x in jobs:
            w = layers[base]
            await write_acts(ctx, dut.acts, x, cfg.cols)
            await stream_send(ctx, dut.cmd, {"base": base, "m": w.shape[0], "k": w.shape[1]})
            vals, n = await recv_tiles(ctx, dut, stall=result_stall, rng=rng)
            await ctx.tick()
            out.append((vals, ctx.get(dut.cycles), n + 1))
    run(dut, tb)
    return out


@pytest.mark.parametrize("rows, cols, fmt, store, opts", [
    (4, 8, "2bit", "generic", {}), (3, 5, "base3", "generic", {}), (16, 16, "2bit", "sliced", {}),
    (16, 16, "2bit", "sliced", {"adder_levels_per_stage": 1}),  # the ULX3S's
    (4, 10, "base3", "generic", {"fetch_register": False, "result_slots": 2}),
    (4, 10, "base3", "generic", {"fetch_register": False, "result_slots": 2, "base3_impl": "bram"}),  # iCEBreaker
])
def test_engine_matches_golden_on_two_layers(rows, cols, fmt, store, opts, rng):
    opts = dict(opts)
    impl = opts.pop("base3_impl", "arith")
    cfg = EngineConfig(rows=rows, cols=cols, fmt=fmt, max_m=64, max_k=96, weight_words=512, **opts)
    w1, w2 = random_trits(rng, 13, 37), random_trits(rng, 40, 96)
    base2 = cfg.layout.words(13, 37)
    x1, x2 = random_int8(rng, 37), random_int8(rng, 96)
    res = run_engine(cfg, {0: w1, base2: w2}, [(0, x1), (base2, x2), (0, x1)],
                     result_stall=0.3, rng=rng, weight_store=store, base3_impl=impl)
    np.testing.assert_array_equal(res[0][0], matvec(w1, x1))
    np.testing.assert_array_equal(res[1][0], matvec(w2, x2))
    np.testing.assert_array_equal(res[2][0], matvec(w1, x1))


@pytest.mark.parametrize("rows, cols, fmt, m, k, opts", [
    (4, 8, "2bit", 64, 96, {}),      # ceil(K/C) = 12 >= rows
    (16, 16, "2bit", 64, 48, {}),    # rows > ceil(K/C) = 3: a tile of results per beat
    (16, 16, "2bit", 48, 96, {}),
    (4, 40, "base3", 64, 96, {}),    # ceil(K/C) = 3
    # the iCEBreaker's pipeline (no RAM output register, two result slots) at the
    # smallest ceil(K/C) it runs at full rate (full_rate_k_tiles = 5)
    (4, 10, "base3", 64, 50, {"fetch_register": False, "result_slots": 2}),
    (4, 10, "base3", 64, 50, {"fetch_register": False, "result_slots": 2, "base3_impl": "bram"}),
    # the ULX3S's: a register after every adder level; ceil(K/C) = 6 >= full_rate_k_tiles
    (16, 16, "2bit", 64, 96, {"adder_levels_per_stage": 1}),
])
def test_engine_runs_at_one_tile_per_cycle_and_states_its_cycles(rows, cols, fmt, m, k, opts, rng):
    opts = dict(opts)
    impl = opts.pop("base3_impl", "arith")
    cfg = EngineConfig(rows=rows, cols=cols, fmt=fmt, max_m=64, max_k=96, weight_words=512, **opts)
    w, x = random_trits(rng, m, k), random_int8(rng, k)
    (vals, cycles, span), = run_engine(cfg, {0: w}, [(0, x)], base3_impl=impl)
    np.testing.assert_array_equal(vals, matvec(w, x))
    eng = MatvecEngine(cfg, base3_impl=impl)
    assert -(-k // cols) >= eng.full_rate_k_tiles or -(-m // rows) <= eng.result_slots
    assert cycles == eng.issue_cycles(m, k) == ideal_cycles(m, k, rows, cols) + 1
    # the last result comes `latency` cycles after the last beat (handshake + beats)
    assert span == eng.issue_cycles(m, k) + eng.latency


def test_engine_below_full_rate_k_waits_for_result_slots_and_stays_exact(rng):
    """ceil(K/C) = 4 < full_rate_k_tiles = 5 with two slots: slower, still bit-exact."""
    cfg = EngineConfig(rows=4, cols=10, fmt="base3", max_m=64, max_k=96, weight_words=512,
                       fetch_register=False, result_slots=2)
    w, x = random_trits(rng, 64, 40), random_int8(rng, 40)
    (vals, cycles, _), = run_engine(cfg, {0: w}, [(0, x)])
    np.testing.assert_array_equal(vals, matvec(w, x))
    assert MatvecEngine(cfg).full_rate_k_tiles == 5
    assert cycles > ideal_cycles(64, 40, 4, 10) + 1


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_engine_takes_the_next_command_while_results_drain(stall, rng):
    """Back-to-back commands on one activation vector (as q, k and v share theirs):
    the second is accepted before the first's results are out, results stay in order,
    and without back-pressure the whole run takes the commands' cycles plus one latency."""
    cfg = EngineConfig(rows=16, cols=16, fmt="2bit", max_m=64, max_k=64, weight_words=512)
    ws = [random_trits(rng, m, 64) for m in (64, 32, 48)]
    bases = [0]
    for w in ws[:-1]:
        bases.append(bases[-1] + cfg.layout.words(*w.shape))
    x = random_int8(rng, 64)
    dut = MatvecEngine(cfg)
    accepted, got, done = [], [], []

    async def send(ctx):
        for b, w in zip(bases, ws):
            await write_words(ctx, dut.weights, b, packed_words(cfg.layout, w))
        await write_acts(ctx, dut.acts, x, cfg.cols)
        for b, w in zip(bases, ws):
            ctx.set(dut.cmd.payload, {"base": b, "m": w.shape[0], "k": 64})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            accepted.append(ctx.get(dut.busy))
        ctx.set(dut.cmd.valid, 0)

    async def recv(ctx):
        await ctx.tick().until(dut.cmd.valid & dut.cmd.ready)
        n = 0
        for _ in ws:
            vals, k = await recv_tiles(ctx, dut, stall=stall, rng=rng)
            got.append(vals)
            n += k
        done.append(n)

    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(send)
    sim.add_testbench(recv)
    sim.run()
    for w, vals in zip(ws, got):
        np.testing.assert_array_equal(vals, matvec(w, x))
    assert all(accepted)  # each later command was taken while the engine was busy
    if not stall:
        # counted as in run_engine (from the first handshake, inclusive): every command's
        # issue cycles, then only the last command's latency
        total = sum(dut.issue_cycles(w.shape[0], 64) for w in ws) + dut.latency
        assert done[0] + 1 == total


def test_engine_holds_a_command_until_the_writes_before_it_have_landed(rng):
    """A one-word activation vector written right before the command (K <= cols): the
    command waits for the registered writes, so the matvec sees the new values."""
    cfg = EngineConfig(rows=4, cols=8, fmt="2bit", max_m=16, max_k=16, weight_words=64)
    w = random_trits(rng, 8, 8)
    xs = [random_int8(rng, 8) for _ in range(3)]
    res = run_engine(cfg, {0: w}, [(0, x) for x in xs])
    for (vals, _, _), x in zip(res, xs):
        np.testing.assert_array_equal(vals, matvec(w, x))
