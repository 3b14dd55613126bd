"""The VM's int8 lanes: ``lanes`` multipliers shared by DOT (``q . row``, the attention
scores and the lm_head) and AXPY (``acc[j] += w * v[j]``, attention's P.V)."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class DotAxpyLanes(wiring.Component):
    """``lanes`` signed ``w_bits x 8`` multipliers (one ECP5 MULT18X18D each), then either
    a sum over the lanes into one accumulator (DOT) or a per-lane accumulator (AXPY).

    Stage 1 registers the products (``a[j] * b[j]`` for DOT, ``w * b[j]`` for AXPY);
    stage 2 registers DOT's sums of groups of 8 products (AXPY's products pass through);
    stage 3 adds them into the accumulators: ``first`` starts a new sum.

    Parameters
    ----------
    lanes : int
        Multipliers (bytes of a row per cycle), default 32.
    w_bits : int
        Signed width of AXPY's weight ``w`` (default 18: the Q1.15 softmax weights
        times a 16-bit mantissa, realigned, are below 2**16).
    acc_bits : int
        Width of the accumulators (default 40).

    Ports
    -----
    en : In(1)            a beat: ``a``/``w``, ``b`` and the flags are taken this cycle
    axpy : In(1)          per-lane accumulation (else DOT)
    first : In(1)         this beat starts a new sum (the accumulators restart from 0)
    a : In(lanes x signed 8)   the query bytes (DOT)
    w : In(signed w_bits)      the weight (AXPY)
    b : In(lanes x signed 8)   a row chunk (key / lm_head / value bytes); lanes past the
                               row's end must be 0 (the caller masks them)
    dot : Out(signed acc_bits) DOT's sum, ``latency`` (3) cycles after its last beat
    acc : Out(lanes x signed acc_bits) AXPY's sums, as ``dot``
    """

    def __init__(self, lanes=32, *, w_bits=18, acc_bits=40):
        for name, v, lo, hi in (("lanes", lanes, 1, 256), ("w_bits", w_bits, 8, 25),
                                ("acc_bits", acc_bits, 20, 64)):
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {v!r}")
        self._lanes, self._w_bits, self._acc_bits = lanes, w_bits, acc_bits
        row = data.ArrayLayout(signed(8), lanes)
        super().__init__({
            "en": In(1), "axpy": In(1), "first": In(1),
            "a": In(row), "w": In(signed(w_bits)), "b": In(row),
            "dot": Out(signed(acc_bits)),
            "acc": Out(data.ArrayLayout(signed(acc_bits), lanes)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def latency(self):
        """Cycles from a beat to its sum on ``dot`` / ``acc``."""
        return 3

    def elaborate(self, platform):
        m = Module()
        L, AB = self._lanes, self._acc_bits
        PB = self._w_bits + 8
        p = Signal(data.ArrayLayout(signed(PB), L))
        en1, axpy1, first1 = Signal(), Signal(), Signal()
        m.d.sync += [en1.eq(self.en), axpy1.eq(self.axpy), first1.eq(self.first)]
        with m.If(self.en):
            for j in range(L):
                m.d.sync += p[j].eq(Mux(self.axpy, self.w, self.a[j]) * self.b[j])
        # stage 2: AXPY's products as they are, DOT's as sums of groups of 8
        groups = -(-L // 8)
        p2 = Signal(data.ArrayLayout(signed(PB), L))
        g2 = Signal(data.ArrayLayout(signed(PB + 3), groups))
        en2, axpy2, first2 = Signal(), Signal(), Signal()
        m.d.sync += [en2.eq(en1), axpy2.eq(axpy1), first2.eq(first1), p2.eq(p)]
        for g in range(groups):
            m.d.sync += g2[g].eq(sum(p[j] for j in range(8 * g, min(L, 8 * g + 8))))
        with m.If(en2):
            with m.If(axpy2):
                for j in range(L):
                    m.d.sync += self.acc[j].eq(Mux(first2, 0, self.acc[j]) + p2[j])
            with m.Else():
                m.d.sync += self.dot.eq(Mux(first2, 0, self.dot) + sum(g2[g] for g in range(groups)))
        return m
