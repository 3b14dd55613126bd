"""The device top: UART -> frame parser -> command engine -> framer -> UART."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .command_engine import CommandEngine
from .framing import FrameParser, Framer
from .stream_register import StreamRegister
from .uart import UartRx, UartTx

DEFAULT_MAX_PAYLOAD = 512


class DeviceCore(wiring.Component):
    """The device on byte streams: frame parser -> command engine -> framer.

    Ports: ``i`` (request bytes in), ``o`` (response bytes out)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    idle: Out(1)

    def __init__(self, config, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=100_000,
                 weight_store="generic", base3_impl="arith"):
        self.config, self.max_payload, self.timeout = config, max_payload, timeout
        self.weight_store, self.base3_impl = weight_store, base3_impl
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # The configs that register the weight RAM's outputs (the ULX3S's) register the
        # frame buffer's too.
        m.submodules.parser = parser = FrameParser(self.max_payload, self.timeout,
                                                   read_register=self.config.fetch_register)
        m.submodules.commands = cmds = CommandEngine(self.config, self.max_payload,
                                                     weight_store=self.weight_store,
                                                     base3_impl=self.base3_impl,
                                                     buf_read_latency=parser.read_latency)
        m.submodules.framer = framer = Framer()
        # Register slices on the response path (registered data, valid *and* ready) keep
        # the command engine's byte mux, the framer's stuffing and the UART's handshake
        # out of one combinational path: with FIFOs there, whose ready follows their
        # read strobe, that path was the iCEBreaker's longest (37 ns, 13 LUTs).
        m.submodules.resp_buf = resp_buf = StreamRegister(8)
        m.submodules.out_buf = out_buf = StreamRegister(8)
        wiring.connect(m, wiring.flipped(self.i), parser.i)
        wiring.connect(m, parser.frame, cmds.frame)
        wiring.connect(m, cmds.buf, parser.buf)
        wiring.connect(m, cmds.header, framer.header)
        wiring.connect(m, cmds.payload, resp_buf.i)
        wiring.connect(m, resp_buf.o, framer.payload)
        wiring.connect(m, framer.o, out_buf.i)
        wiring.connect(m, out_buf.o, wiring.flipped(self.o))
        m.d.comb += self.idle.eq(cmds.idle & framer.idle & ~resp_buf.busy & ~out_buf.busy)
        return m


class DeviceTop(wiring.Component):
    """Everything a board needs but its pins and clock: ``rx`` in, ``tx`` out.

    Parameters
    ----------
    config : EngineConfig
    divisor : int
        UART clock cycles per bit (clock / baud). The simulated board uses a small
        one; a board computes it from its clock and baud rate.
    max_payload : int
        Largest payload of a request or response frame (the frame buffer's size).
    frame_timeout_bits : int
        Bit times of silence after which a partial frame is dropped.
    weight_store, base3_impl : passed to :class:`MatvecEngine`.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    # Nothing to do until the next request byte: the simulated board's harness then
    # sleeps on its input pipe instead of clocking. Unused (and removed) on a board.
    idle: Out(1)

    def __init__(self, config, *, divisor, max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout_bits=2000,
                 weight_store="generic", base3_impl="arith"):
        self.config, self.divisor, self.max_payload = config, divisor, max_payload
        self.timeout = divisor * frame_timeout_bits
        self.weight_store, self.base3_impl = weight_store, base3_impl
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.core = core = DeviceCore(self.config, max_payload=self.max_payload,
                                              timeout=self.timeout, weight_store=self.weight_store,
                                              base3_impl=self.base3_impl)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, core.i)
        wiring.connect(m, core.o, tx.i)
        m.d.comb += self.idle.eq(core.idle & tx.idle & ~rx.o.valid)
        return m
