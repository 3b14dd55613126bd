"""The multiplier-free ternary MAC array."""

from amaranth import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.golden import accumulator_bits

from .decoder import TRIT


def ternary_term(trit, act):
    """``trit * act`` without a multiplier: a trit selects +a, -a or 0."""
    return Mux(trit[0], Mux(trit[1], -act, act), 0)


def adder_tree(values):
    """Sum a list of signed values with a balanced tree (widths grow one bit a level)."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def sum_bits(cols):
    """Width of one row's sum of ``cols`` terms, each in [-128, 128]."""
    return accumulator_bits(cols)


class TernaryMacArray(wiring.Component):
    """``rows x cols`` ternary MACs: ``sums[r] = sum_c trits[r*cols + c] * acts[c]``.

    Each cycle ``cols`` int8 activations meet ``rows*cols`` trits; every product is a
    2:1 mux and a negation, and each row reduces through an adder tree. No multiplier
    (and no DSP block) is used. Combinational: latency 0 cycles; the engine registers
    the sums.

    Ports
    -----
    trits : In(ArrayLayout(signed(2), rows*cols))
    acts : In(ArrayLayout(signed(8), cols))
    sums : Out(ArrayLayout(signed(sum_bits(cols)), rows))
    """

    def __init__(self, rows, cols):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.rows, self.cols = rows, cols
        super().__init__({
            "trits": In(data.ArrayLayout(TRIT, rows * cols)),
            "acts": In(data.ArrayLayout(signed(8), cols)),
            "sums": Out(data.ArrayLayout(signed(sum_bits(cols)), rows)),
        })

    def elaborate(self, platform):
        m = Module()
        for r in range(self.rows):
            terms = [ternary_term(self.trits[r * self.cols + c], self.acts[c]) for c in range(self.cols)]
            m.d.comb += self.sums[r].eq(adder_tree(terms))
        return m
