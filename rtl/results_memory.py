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
    """Read result ``addr``; ``data`` holds it :attr:`ResultsMemory.read_latency` cycles
    later (a pipelined RAM read port: a new address may be presented every cycle)."""

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
    registered : bool
        Register each bank's output and the bank multiplexer's (read latency 3, not 1):
        a RAM's clock-to-out and the multiplexer then have a cycle each, which the
        ULX3S's 100 MHz needs (the RAMs' outputs crossed the chip into the mux). Writes
        go through a register too (latency 2, not 1): the write enables, decoded from
        the command engine's state and the tile's count, fan out to every bank.

    Ports
    -----
    write : In(ResultsWriteSignature) — latency 1 (2 registered) to a read of the same index
    read : In(ResultsReadSignature) — read latency :attr:`read_latency`
    """

    def __init__(self, lanes, depth, acc_bits, *, registered=False):
        for name, v in (("lanes", lanes), ("depth", depth), ("acc_bits", acc_bits)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.lanes, self.depth, self.acc_bits = lanes, depth, acc_bits
        self.registered = bool(registered)
        self.bank_bits = (lanes - 1).bit_length()
        self.banks = 1 << self.bank_bits
        super().__init__({
            "write": In(ResultsWriteSignature(lanes, depth, acc_bits)),
            "read": In(ResultsReadSignature(depth, acc_bits)),
        })

    @property
    def read_latency(self):
        """Cycles from ``read.addr`` to its result on ``read.data``."""
        return 3 if self.registered else 1

    def elaborate(self, platform):
        m = Module()
        B, bb = self.banks, self.bank_bits
        bank_depth = -(-self.depth // B)
        row = self.write.row
        rot = row[:bb] if bb and B != self.lanes else 0
        sel = Signal(range(B))
        m.d.sync += sel.eq(self.read.addr[:bb] if bb else 0)
        if self.registered:  # the bank select follows the data down its register
            sel_q = Signal.like(sel)
            m.d.sync += sel_q.eq(sel)
            sel = sel_q
        outs = []
        for b in range(B):
            mem = memory.Memory(shape=signed(self.acc_bits), depth=bank_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port(transparent_for=())
            if B == self.lanes:  # tiles are aligned: lane b is bank b
                lane, addr = b, row >> bb
                wdata = self.write.data[b]
            else:
                lane = Signal(range(B), name=f"lane{b}")
                m.d.comb += lane.eq((b - rot)[:bb] if bb else 0)
                addr = (row + lane) >> bb
                wdata = Mux(lane < self.lanes, self.write.data[lane], 0)
            # registered: the write goes through a register on its way to the RAMs
            wdomain = m.d.sync if self.registered else m.d.comb
            wdomain += [wr.data.eq(wdata), wr.en.eq(self.write.en & (self.write.count > lane)),
                        wr.addr.eq(addr)]
            m.d.comb += rd.addr.eq(self.read.addr >> bb)
            if self.registered:
                out = Signal.like(rd.data, name=f"bank{b}_q")
                m.d.sync += out.eq(rd.data)
                outs.append(out)
            else:
                outs.append(rd.data)
        domain = m.d.sync if self.registered else m.d.comb
        with m.Switch(sel):
            for b, o in enumerate(outs):
                with m.Case(b):
                    domain += self.read.data.eq(o)
        return m
