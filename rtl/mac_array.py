"""The multiplier-free ternary MAC array, with a pipelined adder tree per row."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.golden import accumulator_bits



def ternary_term(trit, act, neg_act):
    """``trit * act`` without a multiplier: a trit selects ``act``, ``neg_act`` or 0.

    ``neg_act`` is ``-act``, computed once per column and shared by every row, so a
    term is a single 4-input function of its bits (one LUT4 per bit), not a negation."""
    return Mux(trit[0], Mux(trit[1], neg_act, act), 0)


def tree_levels(cols):
    """Adder levels of a balanced tree over ``cols`` terms."""
    return (cols - 1).bit_length()


def sum_bits(cols):
    """Width of one row's sum of ``cols`` terms, each in [-128, 128]."""
    return accumulator_bits(cols)


class TernaryMacArray(wiring.Component):
    """``rows x cols`` ternary MACs: ``sums[r] = sum_c trits[r*cols + c] * acts[c]``.

    Each cycle ``cols`` int8 activations (and their negations, ``neg_acts``, which
    the engine computes once per column) meet ``rows*cols`` trits; every product is a
    3:1 select, and each row reduces through a balanced adder tree. No multiplier
    (and no DSP block) is used.

    The tree is registered after every ``levels_per_stage`` adder levels and at its
    output, so ``sums`` follows the inputs by :attr:`latency` cycles; the pipeline
    takes new inputs every cycle and never stalls (the engine keeps a matching delay
    line for its beat information).

    Parameters
    ----------
    rows, cols : int
    levels_per_stage : int
        Adder levels between registers (the term select counts with the first stage).

    Ports
    -----
    trits : In(unsigned(2*rows*cols))
        Trit ``n = r*cols + c`` in bits ``2n, 2n+1`` (the :data:`~rtl.decoder.TRIT` code).
        A plain vector, not an ``ArrayLayout``: Yosys names the element aliases
        ``trits[n]`` like the vector's bits, and with the register before the array the
        two collided into multiply driven nets in the ECP5 flow.
    acts, neg_acts : In(ArrayLayout(signed(9), cols))
        ``neg_acts[c]`` must equal ``-acts[c]`` (9 bits, since -(-128) = 128).
    sums : Out(ArrayLayout(signed(sum_bits(cols)), rows))
    """

    def __init__(self, rows, cols, *, levels_per_stage=2):
        for name, v in (("rows", rows), ("cols", cols), ("levels_per_stage", levels_per_stage)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.rows, self.cols, self.levels_per_stage = rows, cols, levels_per_stage
        super().__init__({
            "trits": In(unsigned(2 * rows * cols)),
            "acts": In(data.ArrayLayout(signed(9), cols)),
            "neg_acts": In(data.ArrayLayout(signed(9), cols)),
            "sums": Out(data.ArrayLayout(signed(sum_bits(cols)), rows)),
        })

    @property
    def latency(self):
        """Cycles from ``trits``/``acts`` to ``sums``: one register per started group of
        ``levels_per_stage`` adder levels (at least one, at the output)."""
        return max(1, -(-tree_levels(self.cols) // self.levels_per_stage))

    def elaborate(self, platform):
        m = Module()
        stages_left = self.latency
        trit = [self.trits.word_select(n, 2).as_signed() for n in range(self.rows * self.cols)]
        rows = [[ternary_term(trit[r * self.cols + c], self.acts[c], self.neg_acts[c])
                 for c in range(self.cols)] for r in range(self.rows)]
        level = 0
        while len(rows[0]) > 1:
            rows = [[vs[i] + vs[i + 1] if i + 1 < len(vs) else vs[i] for i in range(0, len(vs), 2)]
                    for vs in rows]
            level += 1
            if level % self.levels_per_stage == 0 and len(rows[0]) > 1:
                rows = [[self._register(m, v, f"r{r}_l{level}_{i}") for i, v in enumerate(vs)]
                        for r, vs in enumerate(rows)]
                stages_left -= 1
        assert stages_left == 1
        for r in range(self.rows):
            m.d.sync += self.sums[r].eq(rows[r][0])
        return m

    @staticmethod
    def _register(m, value, name):
        reg = Signal(signed(len(value)), name=name)
        m.d.sync += reg.eq(value)
        return reg
