"""An 8N1 UART: receiver and transmitter, ``divisor`` clock cycles per bit."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class _UartPart(wiring.Component):
    """What both halves share: ``divisor`` clock cycles per bit, checked once."""

    def __init__(self, divisor):
        if not isinstance(divisor, int) or divisor < 3:
            raise ValueError(f"divisor must be an integer of at least 3 clocks per bit, not {divisor!r}")
        self.divisor = divisor
        super().__init__()


class UartRx(_UartPart):
    """Receive bytes from ``rx``; each arrives on the ``o`` stream.

    The line is synchronised with two flip-flops. The first clock that sees it low
    starts a frame; the start edge fell in the clock before, so bit ``k`` (start bit
    0, data 1..8, stop 9) is centred ``(k + 1/2)*divisor - 1/2`` clocks later, and is
    sampled :attr:`sample_offset` ``+ k*divisor`` clocks after that first low clock:
    within half a clock of its centre for an odd divisor, within one clock for an
    even one. A byte not taken before the next one completes is dropped (the
    protocol's CRC and retries recover). A frame whose stop bit is low is dropped too.

    Tolerance (:attr:`baud_tolerance`): the stop bit's sample drifts by
    ``9.5 * divisor * e`` clocks for a sender ``e`` off our rate and must stay inside
    the stop bit: +-3.5% at 3 clocks per bit (the iCEBreaker's 12 Mbaud from 36 MHz), 2.6% at 4.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))

    @property
    def sample_offset(self):
        """Clocks from the first low clock of a start bit to its sample."""
        return self.divisor // 2

    @property
    def baud_tolerance(self):
        """The largest relative baud mismatch this receiver takes, either way.

        With the start edge ``u`` in [0, 1) clocks before the first low clock and a
        sender ``e`` off our rate, bit ``k``'s sample is ``u + S - D/2 - (k+1/2)*D*e``
        clocks from its centre (``S`` the sample offset, ``D`` the divisor); for the
        stop bit (k = 9) to stay inside its bit, ``|e| <= min(S, D - S - 1) / (9.5*D)``.
        The receiver is back in IDLE the clock after the stop bit's sample, so a faster
        sender's next start edge adds no constraint of its own."""
        d, s = self.divisor, self.sample_offset
        return min(s, d - s - 1) / (9.5 * d)

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
                    m.d.sync += timer.eq(self.sample_offset - 1)
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
