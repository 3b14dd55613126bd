"""The sampler's random numbers: Marsaglia's xorshift32, bit-exact to
:func:`ternary_core.integer.sampling.xorshift32` and its seeding."""

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.integer.sampling import xorshift32_seed

SEED_MIX = xorshift32_seed(0)    # the golden seeding is seed ^ SEED_MIX (0 becomes 1)


def xorshift32_next(state):
    """One xorshift32 step on a 32-bit Amaranth value (three shift-xors, no carries)."""
    s1 = state ^ (state << 13)[:32]
    s2 = s1 ^ (s1 >> 17)
    return s2 ^ (s2 << 5)[:32]


class Xorshift32(wiring.Component):
    """A stream of 32-bit draws; a seed write restarts the sequence.

    Ports
    -----
    seed : In(stream of unsigned(32))
        Sets the state to ``xorshift32_seed(seed)``; always ready (wins over a draw in
        the same cycle).
    o : Out(stream of unsigned(32))
        Always valid: the next state, which the handshake commits (``xorshift32``).

    After reset the state is ``xorshift32_seed(0)``. One draw per cycle, latency 0.
    """

    def __init__(self):
        super().__init__({"seed": In(stream.Signature(unsigned(32))),
                          "o": Out(stream.Signature(unsigned(32)))})

    @property
    def latency(self):
        return 0

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=SEED_MIX)
        nxt = Signal(32)
        m.d.comb += [nxt.eq(xorshift32_next(state)), self.o.payload.eq(nxt), self.o.valid.eq(1),
                     self.seed.ready.eq(1)]
        mixed = self.seed.payload ^ SEED_MIX
        with m.If(self.seed.valid):
            m.d.sync += state.eq(mixed | (mixed == 0))
        with m.Elif(self.o.ready):
            m.d.sync += state.eq(nxt)
        return m
