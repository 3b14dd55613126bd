"""A register slice for a stream: registered ``valid``, ``payload`` *and* ``ready``."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class StreamRegister(wiring.Component):
    """Pass a stream through two registers (a main one and a skid one), so that no
    combinational path crosses it in either direction: ``o.valid``/``o.payload`` come
    from a register, and so does ``i.ready``. Throughput one payload per cycle;
    latency one cycle.

    Parameters
    ----------
    shape : the payload's shape

    Ports
    -----
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    busy : Out(1) — holds a payload
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal(self.shape)
        m.d.comb += [self.i.ready.eq(~skid_valid), self.busy.eq(self.o.valid | skid_valid)]
        take = self.i.valid & ~skid_valid
        with m.If(self.o.ready | ~self.o.valid):
            # the main register is free (or being emptied): refill from the skid first
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(take)]
        with m.Elif(take):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
