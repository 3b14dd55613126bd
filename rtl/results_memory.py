"""The results memory: a whole row tile written in one cycle, read one result at a time."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out


class ResultsWriteSignature(wiring.Signature):
    """Write ``count`` results ``data[0..count-1]`` to indices ``row .. row+count-1``
    when ``en`` is high."""

    def __init__(self, lanes, depth, acc_bits):
        super().__init__({
            "row": Out(unsigned(max(1, (depth - 1).bit_length()))),
            "data": Out(data.ArrayLayout(signed(acc_bits), lanes)),
            "count": Out(range(lanes + 1)),
            "en": Out(1),
        })


class ResultsReadSignature(wiring.Signature):
    """Read result ``addr``; ``data`` holds it one cycle later (like a RAM read port)."""

    def __init__(self, depth, acc_bits):
        super().__init__({
            "addr": Out(unsigned(max(1, (depth - 1).bit_length()))),
            "data": In(signed(acc_bits)),
        })


class ResultsMemory(wiring.Component):
    """``depth`` signed accumulators in ``banks`` interleaved RAMs (result ``i`` in bank
    ``i % banks``, ``banks`` the power of two at or above ``lanes``), so a row tile of
    up to ``lanes`` consecutive results lands in one cycle, each in its own bank.

    When ``lanes`` is a power of two the engine writes whole tiles at multiples of
    ``lanes`` and lane ``l`` goes straight to bank ``l``; otherwise the lanes are
    rotated by ``row % banks`` on the way in.

    Parameters
    ----------
    lanes : int — results per write (the engine's rows)
    depth : int — results held (the engine's ``max_m``)
    acc_bits : int

    Ports
    -----
    write : In(ResultsWriteSignature) — latency 1 to a read of the same index
    read : In(ResultsReadSignature) — read latency 1 cycle
    """

    def __init__(self, lanes, depth, acc_bits):
        for name, v in (("lanes", lanes), ("depth", depth), ("acc_bits", acc_bits)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.lanes, self.depth, self.acc_bits = lanes, depth, acc_bits
        self.bank_bits = (lanes - 1).bit_length()
        self.banks = 1 << self.bank_bits
        super().__init__({
            "write": In(ResultsWriteSignature(lanes, depth, acc_bits)),
            "read": In(ResultsReadSignature(depth, acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        B, bb = self.banks, self.bank_bits
        bank_depth = -(-self.depth // B)
        row = self.write.row
        rot = row[:bb] if bb and B != self.lanes else 0
        sel = Signal(range(B))
        m.d.sync += sel.eq(self.read.addr[:bb] if bb else 0)
        outs = []
        for b in range(B):
            mem = memory.Memory(shape=signed(self.acc_bits), depth=bank_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port(transparent_for=())
            if B == self.lanes:  # tiles are aligned: lane b is bank b
                lane, addr = b, row >> bb
                m.d.comb += [wr.data.eq(self.write.data[b]),
                             wr.en.eq(self.write.en & (self.write.count > lane))]
            else:
                lane = Signal(range(B), name=f"lane{b}")
                m.d.comb += lane.eq((b - rot)[:bb] if bb else 0)
                addr = (row + lane) >> bb
                m.d.comb += [wr.data.eq(Mux(lane < self.lanes, self.write.data[lane], 0)),
                             wr.en.eq(self.write.en & (self.write.count > lane))]
            m.d.comb += [wr.addr.eq(addr), rd.addr.eq(self.read.addr >> bb)]
            outs.append(rd.data)
        with m.Switch(sel):
            for b, o in enumerate(outs):
                with m.Case(b):
                    m.d.comb += self.read.data.eq(o)
        return m
