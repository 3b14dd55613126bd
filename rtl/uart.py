"""An 8N1 UART: receiver and transmitter, ``divisor`` clock cycles per bit."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class _UartPart(wiring.Component):
    """What both halves share: ``divisor`` clock cycles per bit, checked once."""

    def __init__(self, divisor):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4 clocks per bit, not {divisor!r}")
        self.divisor = divisor
        super().__init__()


class UartRx(_UartPart):
    """Receive bytes from ``rx``; each arrives on the ``o`` stream.

    The line is synchronised with two flip-flops, the start bit is checked at its
    middle, and each bit is sampled at its middle. A byte not taken before the next
    one completes is dropped (the protocol's CRC and retries recover). A frame whose
    stop bit is low is dropped too.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(8)
        count = Signal(range(10))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), count.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [bits.eq(Cat(bits[1:], rx)),  # LSB first
                                 timer.eq(self.divisor - 1), count.eq(count + 1)]
                    with m.If(count == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(bits), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m


class UartTx(_UartPart):
    """Send each byte of the ``i`` stream on ``tx`` (start bit, 8 data bits LSB first, stop bit)."""

    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    idle: Out(1)

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)
        count = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(count == 0),
                     self.idle.eq((count == 0) & ~self.i.valid)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq((self.i.payload << 1) | (1 << 9)), count.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(count != 0):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq((shreg >> 1) | (1 << 9)), count.eq(count - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
