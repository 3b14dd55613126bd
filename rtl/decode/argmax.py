"""Streaming argmax over a vector (the greedy sampler: ties go to the lowest index, as
:class:`ternary_core.integer.sampling.IntegerSampler` with temperature 0)."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class ArgmaxUnit(wiring.Component):
    """Takes one value per cycle; after the one marked ``last``, offers the index and
    value of the largest (the first of equal largest ones).

    Parameters
    ----------
    value_bits : int
        Width of the signed values (default 32: the Q15.16 logits).
    max_len : int
        Longest vector (default 65536); sets the index width.

    Ports
    -----
    i : In(stream of {value: signed(value_bits), last: 1})
    o : Out(stream of {index: unsigned, value: signed(value_bits)})

    Latency: the result is valid ``latency`` (1) cycle after the ``last`` handshake;
    ``i`` is not ready while a result waits (one idle cycle between vectors).
    A vector longer than ``max_len`` wraps its index counter.
    """

    def __init__(self, *, value_bits=32, max_len=1 << 16):
        if not isinstance(value_bits, int) or not 2 <= value_bits <= 64:
            raise ValueError(f"value_bits must be an integer in 2..64, not {value_bits!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive integer, not {max_len!r}")
        self._max_len = max_len
        idx = unsigned(max(1, (max_len - 1).bit_length()))
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"value": signed(value_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"index": idx, "value": signed(value_bits)}))),
        })

    @property
    def latency(self):
        return 1

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        best = Signal.like(p.value)
        best_idx = Signal.like(self.o.payload.index)
        count = Signal.like(self.o.payload.index)
        first = Signal(init=1)
        m.d.comb += self.i.ready.eq(~self.o.valid)
        # strictly greater: an equal later value never replaces the first one
        take = first | (p.value > best)
        new_best, new_idx = Mux(take, p.value, best), Mux(take, count, best_idx)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(p.last):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.value.eq(new_best),
                             self.o.payload.index.eq(new_idx), first.eq(1), count.eq(0)]
            with m.Else():
                m.d.sync += [best.eq(new_best), best_idx.eq(new_idx), first.eq(0),
                             count.eq(count + 1)]
        return m
