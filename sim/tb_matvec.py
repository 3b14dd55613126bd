"""cocotb testbench of the matvec engine against the golden model.

Run from pytest through :mod:`sim.cocotb_run` (tests/test_cocotb_engine.py); the
engine's :class:`EngineConfig` arrives in ``TERNARY_TB_CONFIG`` and the seed in
``TERNARY_TB_SEED``. Every result word is compared with :func:`golden.matvec`.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from rtl.matvec_engine import MatvecEngine, command_layout, result_layout
from sim.cocotb_streams import StreamSink, StreamSource, field, pack_struct
from sim.export import config_from_env
from ternary_core.golden import ideal_cycles, matvec

CFG = config_from_env(os.environ["TERNARY_TB_CONFIG"])
SEED = int(os.environ.get("TERNARY_TB_SEED", "1"))
STALL = float(os.environ.get("TERNARY_TB_STALL", "0.25"))
CYCLES_OUT = os.environ.get("TERNARY_TB_CYCLES")
# Self-test of the failure path: compare against a wrong golden value on purpose.
SABOTAGE = os.environ.get("TERNARY_TB_SABOTAGE") == "1"
ADDR_BITS = max(1, (CFG.weight_words - 1).bit_length())
CMD = command_layout(ADDR_BITS)
ENGINE = MatvecEngine(CFG)  # for its cycle model only
RES = result_layout(CFG.rows, CFG.acc_bits)


async def write_acts(dut, cfg, x):
    """The activations ``x`` into an engine's buffer through its ``acts`` port, a word of
    ``cfg.cols`` bytes a cycle."""
    padded = np.zeros(-(-len(x) // cfg.cols) * cfg.cols, dtype=np.int8)
    padded[:len(x)] = x
    for j, chunk in enumerate(padded.reshape(-1, cfg.cols)):
        dut.acts__addr.value = j
        dut.acts__data.value = int.from_bytes(chunk.tobytes(), "little")
        dut.acts__en.value = (1 << cfg.cols) - 1
        await RisingEdge(dut.clk)
    dut.acts__en.value = 0


class EngineTB:
    def __init__(self, dut, *, stall):
        self.dut = dut
        self.rng = random.Random(SEED)
        self.np_rng = np.random.default_rng(SEED)
        self.cmd = StreamSource(dut, "cmd", dut.clk, stall=stall, rng=self.rng)
        self.res = StreamSink(dut, "result", dut.clk, stall=stall, rng=self.rng)
        dut.weights__wmask.value = 0
        dut.acts__en.value = 0
        self.records = []
        dut._log.info(f"seed {SEED}, config {CFG}")

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def load_layer(self, base, w):
        words = CFG.layout.pack(w).reshape(-1, CFG.word_bytes)
        for i, word in enumerate(words):
            self.dut.weights__addr.value = base + i
            self.dut.weights__wdata.value = int.from_bytes(word.tobytes(), "little")
            self.dut.weights__wmask.value = (1 << CFG.word_bytes) - 1
            await RisingEdge(self.dut.clk)
        self.dut.weights__wmask.value = 0

    async def load_acts(self, x):
        await write_acts(self.dut, CFG, x)

    async def matvec(self, base, w, x):
        await self.load_acts(x)
        m, k = w.shape
        await self.cmd.send(pack_struct(CMD, base=base, m=m, k=k))
        got = []
        while True:
            raw = await self.res.recv()
            values = raw >> RES["values"].offset
            count = (raw >> RES["count"].offset) & ((1 << RES["count"].width) - 1)
            assert count == min(CFG.rows, m - len(got)), f"tile of {count} results at row {len(got)}"
            for i in range(count):
                v = (values >> (i * CFG.acc_bits)) & ((1 << CFG.acc_bits) - 1)
                got.append(v - (1 << CFG.acc_bits) if v >> (CFG.acc_bits - 1) else v)
            if field(RES, raw, "last"):
                break
        await RisingEdge(self.dut.clk)
        cycles = int(self.dut.cycles.value)
        expected = matvec(w, x, CFG.acc_bits)
        if SABOTAGE:
            expected = expected + 1
        assert len(got) == m, f"{len(got)} results for M={m}"
        bad = np.nonzero(np.array(got) != expected)[0]
        assert not bad.size, (f"row {bad[0]}: engine {got[bad[0]]}, golden {expected[bad[0]]} "
                              f"(M={m}, K={k}, base={base})")
        self.records.append({"m": m, "k": k, "cycles": cycles,
                             "ideal": ideal_cycles(m, k, CFG.rows, CFG.cols),
                             "issue_cycles": ENGINE.issue_cycles(m, k)})
        return cycles

    def save_records(self):
        if CYCLES_OUT:
            with open(CYCLES_OUT, "a") as f:
                for r in self.records:
                    f.write(json.dumps(r) + "\n")


def trits(rng, m, k, kind="random"):
    if kind == "zero":
        return np.zeros((m, k), np.int8)
    if kind in ("plus", "minus"):
        return np.full((m, k), 1 if kind == "plus" else -1, np.int8)
    return rng.integers(-1, 2, size=(m, k)).astype(np.int8)


def acts(rng, k, kind="random"):
    if kind in ("min", "max"):
        return np.full(k, -128 if kind == "min" else 127, np.int8)
    return rng.integers(-128, 128, size=k).astype(np.int8)


@cocotb.test()
async def random_shapes_back_to_back_on_two_layers(dut):
    """Random M, K (not multiples of R or C), two stored layers, alternating, with stalls."""
    tb = EngineTB(dut, stall=STALL)
    await tb.reset()
    r = tb.np_rng
    shapes = [(int(r.integers(1, min(CFG.max_m, 40) + 1)), int(r.integers(1, CFG.max_k + 1)))
              for _ in range(2)]
    ws = [trits(r, *s) for s in shapes]
    bases = [0, CFG.layout.words(*shapes[0]) + int(r.integers(0, 5))]
    for b, w in zip(bases, ws):
        await tb.load_layer(b, w)
    for i in range(6):
        j = i % 2
        await tb.matvec(bases[j], ws[j], acts(r, shapes[j][1]))
    tb.save_records()


@cocotb.test()
async def extreme_weights_and_activations_at_max_k(dut):
    """All-zero, all +1, all -1 weights against -128 and 127 activations at K = max_k."""
    tb = EngineTB(dut, stall=STALL)
    await tb.reset()
    k, m = CFG.max_k, min(CFG.max_m, 2 * CFG.rows + 1)
    for wk in ("zero", "plus", "minus"):
        w = trits(tb.np_rng, m, k, wk)
        await tb.load_layer(0, w)
        for ak in ("min", "max"):
            await tb.matvec(0, w, acts(tb.np_rng, k, ak))
    tb.save_records()


@cocotb.test()
async def model_layer_shapes_at_full_speed(dut):
    """The shipped model's layer shapes that fit (K = 128, 256; M = 64, 128, 256), no
    stalls, each checked and its cycles recorded."""
    tb = EngineTB(dut, stall=0.0)
    await tb.reset()
    for m, k in ((64, 128), (128, 128), (256, 128), (128, 256)):
        if m <= CFG.max_m and k <= CFG.max_k and CFG.layout.words(m, k) <= CFG.weight_words:
            w = trits(tb.np_rng, m, k)
            await tb.load_layer(0, w)
            await tb.matvec(0, w, acts(tb.np_rng, k))
    tb.save_records()


@cocotb.test()
async def full_speed_cycle_count(dut):
    """No stalls: a largest-shape matvec's cycles, recorded for the cycle report."""
    tb = EngineTB(dut, stall=0.0)
    await tb.reset()
    m, k = CFG.max_m, CFG.max_k
    w = trits(tb.np_rng, m, k)
    await tb.load_layer(0, w)
    cycles = await tb.matvec(0, w, acts(tb.np_rng, k))
    ideal = ideal_cycles(m, k, CFG.rows, CFG.cols)
    dut._log.info(f"{m}x{k}: {cycles} cycles, ideal {ideal}")
    tb.save_records()
