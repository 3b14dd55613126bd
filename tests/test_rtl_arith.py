"""The VM's arithmetic units (rtl/arith: scalar unit, exp2 and sigmoid tables, xorshift32) bit-exact
against the integer golden model (ternary_core.integer), over random (seeded) and extreme
inputs, with idle cycles on every input stream and back-pressure on every output stream."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl.arith.exp2 import Exp2Unit
from rtl.arith.scalar_unit import ScalarOp, ScalarUnit
from rtl.arith.sigmoid import SigmoidUnit
from rtl.arith.xorshift import SEED_MIX, Xorshift32
from ternary_core.integer import fixed
from ternary_core.integer.fixed import E_ZERO, Scalar
from ternary_core.integer.sampling import xorshift32, xorshift32_seed


# --- stream drivers ----------------------------------------------------------------


def simulate(dut, items, i, o, *, rng, idle=0.3, stall=0.3, timeout=200_000):
    """Feed ``items`` (payload dicts) into stream ``i`` with random idle cycles, read as
    many payloads from ``o`` with random back-pressure; return them in arrival order."""
    got = []

    async def source(ctx):
        for item in items:
            while rng.random() < idle:
                await ctx.tick()
            ctx.set(i.payload, item)
            ctx.set(i.valid, 1)
            await ctx.tick().until(i.ready)
            ctx.set(i.valid, 0)

    async def sink(ctx):
        for _ in range(timeout):
            if len(got) == len(items):
                return
            ready = rng.random() >= stall
            ctx.set(o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(o.valid, o.payload)
            if valid and ready:
                got.append(payload)
        raise TimeoutError(f"{len(got)} of {len(items)} results arrived")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got


def first_result_cycles(dut, item, i, o):
    """Clock edges from the input handshake to the first ``o.valid``."""
    out = {}

    async def tb(ctx):
        ctx.set(o.ready, 1)
        ctx.set(i.payload, item)
        ctx.set(i.valid, 1)
        await ctx.tick().until(i.ready)
        ctx.set(i.valid, 0)
        n = 1
        while not ctx.get(o.valid):
            await ctx.tick()
            n += 1
        out["n"] = n

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out["n"]


# --- scalar unit -----------------------------------------------------------------------


def random_scalars(rng, n, e_lo=-300, e_hi=300):
    m = rng.integers(1 << 15, 1 << 16, n)
    m[rng.random(n) < 0.1] = 0
    m[rng.random(n) < 0.05] = (1 << 16) - 1
    m[rng.random(n) < 0.05] = 1 << 15
    e = rng.integers(e_lo, e_hi, n)
    return Scalar(m, np.where(m == 0, E_ZERO, e))


def random_ints(rng, n, bits):
    """Non-negative ints with uniformly random bit lengths 0..bits, plus carries."""
    lens = rng.integers(0, bits + 1, n)
    x = np.array([int(rng.integers(0, 1 << int(b))) | (1 << int(b) >> 1) if b else 0
                  for b in lens], dtype=object)
    carry = rng.random(n) < 0.1               # 17+ ones round up into a new bit
    x[carry] = [(1 << int(b)) - 1 for b in rng.integers(17, bits + 1, int(carry.sum()))]
    return x


def golden_scalar(op, a, b, x, k):
    if op == ScalarOp.MUL:
        return fixed.scalar_mul(a, b)
    if op == ScalarOp.SHIFT:
        return fixed.scalar_shift(a, k)
    if op == ScalarOp.FROM_INT:
        return fixed.scalar_from_int(np.array([int(v) for v in x], np.int64), k)
    if op == ScalarOp.ADD:
        return fixed.scalar_add(a, b)
    if op == ScalarOp.RECIP:
        return fixed.scalar_recip(a)
    return fixed.scalar_rsqrt(a)


def check_scalar_unit(dut, op, a, b, x, k, rng, **kw):
    items = [{"op": op, "a": {"m": int(a.m[j]), "e": int(a.e[j])},
              "b": {"m": int(b.m[j]), "e": int(b.e[j])}, "x": int(x[j]), "k": int(k[j])}
             for j in range(len(k))]
    got = simulate(dut, items, dut.i, dut.o, rng=rng, **kw)
    want = golden_scalar(op, a, b, x, k)
    for j, g in enumerate(got):
        wm, we = int(want.m[j]), int(want.e[j])
        assert (g.value.m, g.value.e if wm else E_ZERO, g.ovf) == (wm, we, 0), (op, items[j])


@pytest.mark.parametrize("op", list(ScalarOp))
def test_scalar_unit_matches_golden_on_random_operands(op, rng):
    dut = ScalarUnit()
    n = 300
    a, b = random_scalars(rng, n), random_scalars(rng, n)
    if op == ScalarOp.ADD:   # exponents near each other, where alignment rounds
        near = np.where(a.m == 0, rng.integers(-300, 300, n), a.e + rng.integers(-40, 40, n))
        b = Scalar(b.m, np.where(b.m == 0, E_ZERO, near))
    x = random_ints(rng, n, dut.int_bits) if op == ScalarOp.FROM_INT else np.zeros(n, np.int64)
    k = rng.integers(-400, 400, n)
    check_scalar_unit(dut, op, a, b, x, k, rng)


def test_scalar_unit_extreme_operands(rng):
    dut = ScalarUnit()
    edge_m = [0, 1 << 15, (1 << 15) + 1, (1 << 16) - 1, (1 << 16) - 2, 0xB504, 0xFF00, 0x8080]
    edge_e = [-1000, -17, -16, -1, 0, 1, 15, 16, 999]
    grid = np.array([(mm, ee) for mm in edge_m for ee in edge_e])
    a = Scalar(grid[:, 0], np.where(grid[:, 0] == 0, E_ZERO, grid[:, 1]))
    b = Scalar(a.m[::-1].copy(), a.e[::-1].copy())
    n = len(grid)
    k = np.zeros(n, np.int64)
    for op in (ScalarOp.MUL, ScalarOp.ADD, ScalarOp.RECIP, ScalarOp.RSQRT, ScalarOp.SHIFT):
        check_scalar_unit(dut, op, a, b, np.zeros(n, np.int64), k, rng, idle=0, stall=0)
    xs = [0, 1, 2, 127, (1 << 16) - 1, 1 << 16, (1 << 17) - 1, (1 << 17) + 1, (1 << 33) - 1,
          (1 << dut.int_bits) - 1, 1 << (dut.int_bits - 1)]
    x = np.array(xs, dtype=object)
    check_scalar_unit(dut, ScalarOp.FROM_INT, a[:len(xs)], b[:len(xs)], x,
                      np.array([0, -16, 16, 5, -5, 0, 0, 0, -40, -31, 31]), rng, idle=0, stall=0)


def test_scalar_unit_flags_exponent_overflow(rng):
    dut = ScalarUnit(exp_bits=12)
    big = {"m": 1 << 15, "e": 2000}
    items = [{"op": ScalarOp.MUL, "a": big, "b": big, "x": 0, "k": 0},
             {"op": ScalarOp.SHIFT, "a": big, "b": big, "x": 0, "k": 100},
             {"op": ScalarOp.FROM_INT, "a": big, "b": big, "x": 1 << 40, "k": 2040},
             {"op": ScalarOp.MUL, "a": big, "b": {"m": 0, "e": E_ZERO}, "x": 0, "k": 0},
             {"op": ScalarOp.SHIFT, "a": big, "b": big, "x": 0, "k": 40}]
    got = simulate(dut, items, dut.i, dut.o, rng=rng)
    assert [g.ovf for g in got] == [1, 1, 1, 0, 0]
    assert (got[3].value.m, got[4].value.m, got[4].value.e) == (0, 1 << 15, 2040)


def rejects(cls, match, **kw):
    """``cls(**kw)`` raises ValueError matching ``match``; the half-built component is
    collected here, so Amaranth's unused-elaboratable warning does not leak into a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=match):
            cls(**kw)
        gc.collect()


def test_scalar_unit_latency_and_parameters():
    dut = ScalarUnit()
    item = {"op": ScalarOp.MUL, "a": {"m": 1 << 15, "e": 0}, "b": {"m": 1 << 15, "e": 0},
            "x": 0, "k": 0}
    assert first_result_cycles(dut, item, dut.i, dut.o) == dut.latency
    rejects(ScalarUnit, "exp_bits must be an integer in 11..24", exp_bits=8)
    rejects(ScalarUnit, "int_bits must be an integer in 34..64", int_bits=20)


# --- exp2, sigmoid, xorshift32 ----------------------------------------------------


def test_exp2_unit_matches_golden(rng):
    dut = Exp2Unit()
    d = np.concatenate([np.arange(0, 18 * 256, 7), [0, 255, 256, 16 * 256 - 1, 16 * 256,
                                                    17 * 256 - 1, 17 * 256, 1 << 30, (1 << 32) - 1],
                        rng.integers(0, 1 << 32, 100)])
    items = [{"d": int(v), "last": int(j == len(d) - 1)} for j, v in enumerate(d)]
    got = simulate(dut, items, dut.i, dut.o, rng=rng)
    assert [g.value for g in got] == fixed.exp2_neg(d).tolist()
    assert [g.last for g in got] == [it["last"] for it in items]
    assert first_result_cycles(dut, items[0], dut.i, dut.o) == dut.latency


def test_sigmoid_unit_matches_golden_at_every_segment_clamp_and_sign(rng):
    dut = SigmoidUnit()
    seg = 1 << (fixed.SIGMOID_FRAC_BITS - fixed.SIGMOID_STEP_BITS)     # 256 z per table step
    bounds = np.arange(0, (1 << 16) + seg, seg)                       # every table entry
    edges = np.concatenate([bounds - 1, bounds, bounds + 1, bounds + seg // 2 - 1,
                            bounds + seg // 2])                       # and the rounding half
    clamp = [(1 << 16) - 2, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 1 << 17, 1 << 40,
             (1 << 63) - 1]
    z = np.concatenate([edges, -edges, clamp, [-v for v in clamp],
                        rng.integers(-(1 << 17), 1 << 17, 300),
                        rng.integers(-(1 << 62), 1 << 62, 20)])
    x_ext = [0, 1, -1, (1 << 17) - 1, -(1 << 17)]
    x = np.concatenate([x_ext, rng.integers(-(1 << 17), 1 << 17, len(z) - len(x_ext))])
    items = [{"x": int(a), "z": int(b), "last": int(j == len(z) - 1)}
             for j, (a, b) in enumerate(zip(x, z))]
    got = simulate(dut, items, dut.i, dut.o, rng=rng)
    want = (x * fixed.sigmoid_q15(z)).tolist()
    bad = [j for j, g in enumerate(got) if g.value != want[j]]
    assert not bad, [(int(x[j]), int(z[j]), got[j].value, want[j]) for j in bad[:5]]
    assert [g.last for g in got] == [it["last"] for it in items]
    assert first_result_cycles(dut, items[0], dut.i, dut.o) == dut.latency
    # x = 1 shows the sigmoid itself (Q1.15): 0.5 at 0, 1.0 from the clamp on, 0 below -16
    # (also at -2**63, whose magnitude numpy's golden model cannot take), 1 - sigmoid(1) at -1
    zs = (0, (1 << 16) - 1, 1 << 20, -(1 << 20), -(1 << 63), -(1 << 12))
    got = [g.value for g in simulate(dut, [{"x": 1, "z": v, "last": 0} for v in zs],
                                     dut.i, dut.o, rng=rng)]
    assert got == [1 << 14, 1 << 15, 1 << 15, 0, 0, round(32768 / (1 + np.e))]


def test_sigmoid_unit_parameters(rng):
    assert SigmoidUnit(x_bits=18).out_bits == 33
    # the narrowest z (17 bits: the golden silu_glu's saturated Q4.12) and an 8-bit x
    dut = SigmoidUnit(x_bits=8, z_bits=17)
    z = np.concatenate([[-(1 << 16), -(1 << 16) + 1, -1, 0, (1 << 16) - 1],
                        rng.integers(-(1 << 16), 1 << 16, 200)])
    x = rng.integers(-128, 128, len(z))
    items = [{"x": int(a), "z": int(b), "last": 0} for a, b in zip(x, z)]
    got = [g.value for g in simulate(dut, items, dut.i, dut.o, rng=rng)]
    assert got == (x * fixed.sigmoid_q15(z)).tolist()
    rejects(SigmoidUnit, "x_bits must be an integer in 2..48", x_bits=1)
    rejects(SigmoidUnit, "z_bits must be an integer in 17..64", z_bits=65)
    rejects(SigmoidUnit, "z_bits must be an integer in 17..64", z_bits=16)


def test_xorshift32_matches_golden_sequence_and_reseeds(rng):
    dut = Xorshift32()
    seeds = [0, int(rng.integers(0, 1 << 32)), SEED_MIX]     # SEED_MIX mixes to 0 -> 1
    got = {}

    async def tb(ctx):
        for seed in seeds:
            ctx.set(dut.seed.payload, seed)
            ctx.set(dut.seed.valid, 1)
            await ctx.tick()
            ctx.set(dut.seed.valid, 0)
            draws = []
            while len(draws) < 20:
                ready = rng.random() < 0.6
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if ready and valid:
                    draws.append(payload)
            ctx.set(dut.o.ready, 0)
            got[seed] = draws

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for seed in seeds:
        state, want = xorshift32_seed(seed), []
        for _ in range(20):
            state = xorshift32(state)
            want.append(state)
        assert got[seed] == want, seed
