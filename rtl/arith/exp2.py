"""The softmax's exponential: ``2**(-d / 256)`` in Q1.15 for ``d >= 0``, bit-exact to
:func:`ternary_core.integer.fixed.exp2_neg` (the attention softmax and the sampler)."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.integer.fixed import EXP2_FRAC_BITS, EXP2_TABLE

from .pipeline import StallPipeline, shift_round_right

EXP2_OUT_BITS = 16           # Q1.15: the table's 1.0 is 2**15


class Exp2Unit(wiring.Component):
    """One ``exp2_neg`` per cycle: the low 8 bits of ``d`` index a 256 x 16-bit ROM of
    ``2**-f`` (the golden model's ``EXP2_TABLE``), the rest is a rounding right shift;
    from ``d >> 8 > 16`` on the result is 0.

    Parameters
    ----------
    in_bits : int
        Width of the unsigned ``d`` (default 32; attention differences have 25 bits,
        the sampler's are clamped to 2**30).

    Ports
    -----
    i : In(stream of {d: unsigned(in_bits), last: 1})
    o : Out(stream of {value: unsigned(16), last: 1})
        ``last`` is passed through (it marks a vector's end for the next unit).

    Latency ``latency`` (2) cycles, throughput one per cycle.
    """

    def __init__(self, *, in_bits=32):
        if not isinstance(in_bits, int) or not EXP2_FRAC_BITS <= in_bits <= 64:
            raise ValueError(f"in_bits must be an integer in {EXP2_FRAC_BITS}..64, not {in_bits!r}")
        self._in_bits = in_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"d": unsigned(in_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": unsigned(EXP2_OUT_BITS),
                                                         "last": 1}))),
        })

    @property
    def latency(self):
        return 2

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        # in LUTs, not a block RAM (the scarce resource of the whole-model ULX3S build)
        m.submodules.rom = rom = memory.Memory(shape=unsigned(EXP2_OUT_BITS), depth=len(EXP2_TABLE),
                                               init=[int(v) for v in EXP2_TABLE],
                                               attrs={"rom_style": "logic"})
        rd = rom.read_port(domain="sync")
        d = self.i.payload.d
        ip = d[EXP2_FRAC_BITS:]
        ip_c = Signal(range(18))      # the integer part, clamped: 17 stands for "> 16"
        last = Signal()
        m.d.comb += [rd.en.eq(pipe.en), rd.addr.eq(d[:EXP2_FRAC_BITS])]
        with m.If(pipe.en):
            m.d.sync += [ip_c.eq(Mux(ip > 16, 17, ip)), last.eq(self.i.payload.last)]
            m.d.sync += [self.o.payload.value.eq(Mux(ip_c == 17, 0, shift_round_right(rd.data, ip_c, 16))),
                         self.o.payload.last.eq(last)]
        return m
