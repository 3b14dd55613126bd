"""The SiLU GLU's gate: ``x * sigmoid(z / 2**12)``, the sigmoid in Q1.15, bit-exact to
``x * ternary_core.integer.fixed.sigmoid_q15(z)`` (the VM's VOP SIGMUL)."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.integer.fixed import (SIGMOID_FRAC_BITS, SIGMOID_ONE, SIGMOID_STEP_BITS,
                                        SIGMOID_TABLE)

from .pipeline import StallPipeline

STEP = SIGMOID_FRAC_BITS - SIGMOID_STEP_BITS     # fraction bits interpolated: 8
A_MAX = (1 << (SIGMOID_FRAC_BITS + 4)) - 1      # |z| is clamped here (just below 16.0)
SIG_BITS = SIGMOID_ONE.bit_length()              # 16: the sigmoid, 0..2**15 (Q1.15)
SEGMENTS = (A_MAX >> STEP) + 1                   # 256: the table's last entry is only a "hi"
DELTA_BITS = 10                                  # neighbours differ by at most 2**9
Z_MIN_BITS = SIGMOID_FRAC_BITS + 5               # 17: every |z| up to the clamp, and its sign


def _rom_layout():
    return data.StructLayout({"lo": unsigned(SIG_BITS), "delta": unsigned(DELTA_BITS)})


def _rom_init():
    """Entry ``i``: ``SIGMOID_TABLE[i]`` and the step to ``SIGMOID_TABLE[i + 1]`` (the
    table rises, so the step is never negative)."""
    lo = [int(v) for v in SIGMOID_TABLE[:SEGMENTS]]
    delta = [int(b) - int(a) for a, b in zip(SIGMOID_TABLE[:SEGMENTS], SIGMOID_TABLE[1:])]
    if len(SIGMOID_TABLE) != SEGMENTS + 1 or not all(0 <= d < 1 << DELTA_BITS for d in delta):
        raise AssertionError("the sigmoid table is not 257 rising entries with 10-bit steps")
    return [{"lo": a, "delta": d} for a, d in zip(lo, delta)]


class SigmoidUnit(wiring.Component):
    """One ``x * sigmoid_q15(z)`` per cycle.

    ``|z|`` is clamped to ``2**16 - 1``; its top 8 bits index a 256-entry ROM of the
    golden model's ``SIGMOID_TABLE[i]`` and of the step to entry ``i + 1`` (one read gives
    both neighbours), its low 8 bits interpolate (a 10x8 multiply and a rounding shift,
    half up); a negative ``z`` takes ``1.0 - s``. Then ``x`` times the sigmoid.

    Stage 1 (registered): the clamp, the ROM (in LUTs, read without a register: block
    RAM is the scarce resource of the whole-model ULX3S build) and the interpolation.
    Stage 2 (registered): the complement for a negative ``z`` and the ``x_bits`` x 16
    multiply.

    Parameters
    ----------
    x_bits : int
        Width of the signed ``x`` (default 18: one DSP multiply).
    z_bits : int
        Width of the signed ``z``, at least 17 (default 64, the VM's element values; the
        bits past 17 only saturate).

    Ports
    -----
    i : In(stream of {x: signed(x_bits), z: signed(z_bits), last: 1})
    o : Out(stream of {value: signed(x_bits + 15), last: 1})
        ``last`` is passed through (it marks a vector's end for the next unit).

    Latency ``latency`` (2) cycles, throughput one per cycle (as the Exp2Unit's, so the
    two share the VM's pipeline stages).
    """

    def __init__(self, *, x_bits=18, z_bits=64):
        if not isinstance(x_bits, int) or not 2 <= x_bits <= 48:
            raise ValueError(f"x_bits must be an integer in 2..48, not {x_bits!r}")
        if not isinstance(z_bits, int) or not Z_MIN_BITS <= z_bits <= 64:
            raise ValueError(f"z_bits must be an integer in {Z_MIN_BITS}..64, not {z_bits!r}")
        self._x_bits, self._z_bits = x_bits, z_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": signed(x_bits),
                                                        "z": signed(z_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": signed(self.out_bits),
                                                         "last": 1}))),
        })

    @property
    def out_bits(self):
        """Width of the signed product: ``|x * s| <= 2**(x_bits - 1) * 2**15``."""
        return self._x_bits + SIG_BITS - 1

    @property
    def latency(self):
        return 2

    @property
    def throughput(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, self.latency)
        m.submodules.rom = rom = memory.Memory(shape=_rom_layout(), depth=SEGMENTS,
                                               init=_rom_init(), attrs={"rom_style": "logic"})
        rd = rom.read_port(domain="comb")
        z = self.i.payload.z

        # stage 1: |z| clamped, the two neighbours, the interpolation. The clamp looks at
        # z's top bits (no carry chain over z_bits): |z| > A_MAX unless z's bits from 16 up
        # are all 0, or all 1 with a non-zero low part (-65535..-1)
        neg = z < 0
        hi, lo = z[SIGMOID_FRAC_BITS + 4:], z[:SIGMOID_FRAC_BITS + 4]
        big = Mux(neg, ~(hi.all() & lo.any()), hi.any())
        mag = Mux(neg, -lo, lo)[:SIGMOID_FRAC_BITS + 4]
        a = Signal(unsigned(SIGMOID_FRAC_BITS + 4), name="sig_a")
        m.d.comb += a.eq(Mux(big, A_MAX, mag))
        m.d.comb += rd.addr.eq(a[STEP:])
        step = (rd.data.delta * a[:STEP] + (1 << (STEP - 1))) >> STEP
        s1 = Signal(unsigned(SIG_BITS), name="sig_s1")
        neg1 = Signal(name="sig_neg1")
        x1 = Signal(signed(self._x_bits), name="sig_x1")
        last1 = Signal()

        # stage 2: 1 - s for a negative z, times x
        sig = Signal(unsigned(SIG_BITS), name="sig_q15")
        m.d.comb += sig.eq(Mux(neg1, SIGMOID_ONE - s1, s1))
        with m.If(pipe.en):
            m.d.sync += [s1.eq(rd.data.lo + step), neg1.eq(neg), x1.eq(self.i.payload.x),
                         last1.eq(self.i.payload.last)]
            m.d.sync += [self.o.payload.value.eq(x1 * sig), self.o.payload.last.eq(last1)]
        return m
