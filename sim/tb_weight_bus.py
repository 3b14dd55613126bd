"""cocotb testbench of the matvec engine's weight bus: random writes and reads, back to
back, against a model of the store.

Run from pytest through :mod:`sim.cocotb_run` (tests/test_cocotb_weight_bus.py); the
engine's :class:`EngineConfig` arrives in ``TERNARY_TB_CONFIG``, the weight store's kind
in ``TERNARY_TB_STORE`` and the seed in ``TERNARY_TB_SEED``. Every read's data, taken
:attr:`MatvecEngine.weight_read_latency` cycles after its address, must be the word the
store holds after every write presented before it (in the order presented).
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from rtl.matvec_engine import MatvecEngine
from sim.export import config_from_env

CFG = config_from_env(os.environ["TERNARY_TB_CONFIG"])
STORE = os.environ.get("TERNARY_TB_STORE", "generic")
SEED = int(os.environ.get("TERNARY_TB_SEED", "1"))
OPS = int(os.environ.get("TERNARY_TB_OPS", "3000"))
LATENCY = MatvecEngine(CFG, weight_store=STORE).weight_read_latency
NB = CFG.word_bytes
FULL = (1 << NB) - 1


class StoreModel:
    """The weight store as a user of the bus sees it, write by write.

    The "packed" store has no byte enables: a write stores its whole word, the bytes
    not written taken from the previous write's word (from zero when byte 0 is written),
    as :class:`rtl.weight_store.WeightStore` documents.
    """

    def __init__(self, packed):
        self.packed, self.words, self.stage = packed, {}, 0  # the RTL's staging register resets to 0

    def write(self, addr, data, mask):
        if self.packed:
            base = 0 if mask & 1 else self.stage
        else:
            base = self.words.get(addr, 0) if mask == FULL else self.words[addr]
        word = 0
        for i in range(NB):
            src = data if mask >> i & 1 else base
            word |= src & (0xFF << 8 * i)
        self.words[addr] = self.stage = word

    def read(self, addr):
        return self.words[addr]


@cocotb.test()
async def random_back_to_back_writes_and_reads(dut):
    """Writes (whole words and single bytes) and reads on a few addresses, in random
    order with no gap, each read checked against the model."""
    rng = random.Random(SEED)
    dut._log.info(f"seed {SEED}, store {STORE}, read latency {LATENCY}, config {CFG}")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.weights__wmask.value = 0
    dut.weights__addr.value = 0
    dut.acts__en.value = 0
    dut.cmd__valid.value = 0
    dut.result__ready.value = 1
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    # A handful of addresses (the top word among them), so that reads often hit a word
    # written a cycle or two before.
    addrs = sorted(rng.sample(range(CFG.weight_words), min(6, CFG.weight_words)) + [CFG.weight_words - 1])
    model = StoreModel(STORE == "packed")
    ops = [("w", a, rng.getrandbits(8 * NB), FULL) for a in addrs]  # every address known
    for _ in range(OPS):
        kind = rng.choice("wwbrrr")
        addr = rng.choice(addrs)
        if kind == "r":
            ops.append(("r", addr, 0, 0))
        else:
            mask = FULL if kind == "w" else 1 << rng.randrange(NB)
            ops.append(("w", addr, rng.getrandbits(8 * NB), mask))
    # a word's bytes in turn, byte 0 first, as an upload writes them (back to back here),
    # then every word read
    ops += [("w", addrs[0], rng.getrandbits(8 * NB), 1 << i) for i in range(NB)] + [("r", a, 0, 0) for a in addrs]

    pending = {}  # cycle -> (op index, address, expected word)
    checked = mismatches = 0
    first_bad = None
    for cycle in range(len(ops) + LATENCY + 1):
        if cycle < len(ops):
            kind, addr, data, mask = ops[cycle]
            dut.weights__addr.value = addr
            dut.weights__wdata.value = data
            dut.weights__wmask.value = mask if kind == "w" else 0
            if kind == "w":
                model.write(addr, data, mask)
            else:
                pending[cycle + LATENCY] = (cycle, addr, model.read(addr))
        else:
            dut.weights__wmask.value = 0
        await ReadOnly()
        if cycle in pending:
            i, addr, want = pending.pop(cycle)
            got = int(dut.weights__rdata.value)
            checked += 1
            if got != want:
                mismatches += 1
                if first_bad is None:
                    prev = ops[i - 1]
                    first_bad = (f"op {i}: read of word {addr} returned {got:#x}, the store holds "
                                 f"{want:#x} (previous op: {prev[0]} of word {prev[1]})")
        await RisingEdge(dut.clk)
    dut._log.info(f"seed {SEED}: {checked} reads checked, {mismatches} wrong")
    assert checked > OPS // 4, f"only {checked} reads checked"
    assert not mismatches, f"seed {SEED}, store {STORE}: {mismatches} of {checked} reads wrong; first: {first_bad}"
