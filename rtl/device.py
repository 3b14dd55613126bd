"""The device top: UART -> frame parser -> command engine -> framer -> UART."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .command_engine import CommandEngine
from .framing import FrameParser, Framer
from .stream_register import StreamRegister
from .uart import UartRx, UartTx
from .vm.spaces import vm_spaces
from .vm_commands import VmCommandEngine, is_vm_command

DEFAULT_MAX_PAYLOAD = 512


class DeviceCore(wiring.Component):
    """The device on byte streams: frame parser -> command engine -> framer.

    With a vector machine (``vm``, protocol version 3), its commands go to a
    :class:`~rtl.vm_commands.VmCommandEngine` beside the command engine, and the
    machine drives the matvec engine while it runs (:func:`connect_vm`).

    Ports: ``i`` (request bytes in), ``o`` (response bytes out)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    idle: Out(1)

    def __init__(self, config, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=100_000,
                 weight_store="generic", base3_impl="arith", vm=None):
        self.config, self.max_payload, self.timeout = config, max_payload, timeout
        self.weight_store, self.base3_impl = weight_store, base3_impl
        self.vm = vm
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
                                                     buf_read_latency=parser.read_latency,
                                                     limits=None if self.vm is None else self.vm.limits,
                                                     share_engine=self.vm is not None and
                                                     "engine" in self.vm.signature.members)
        m.submodules.framer = framer = Framer()
        if self.vm is not None:
            return self._elaborate_with_vm(m, parser, cmds, framer)
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

    def _elaborate_with_vm(self, m, parser, cmds, framer):
        """The same path, with each checked frame routed to the command engine or the
        vector machine's command engine by its command, and their responses merged.
        One request is in flight at a time and the parser holds its frame until the
        response is out, so the route, taken from that frame, is stable throughout."""
        vm = self.vm
        m.submodules.vm = vm
        m.submodules.vm_commands = vmc = VmCommandEngine(
            vm_spaces(vm), self.max_payload, buf_read_latency=getattr(parser, "read_latency", 1))
        m.submodules.resp_buf = resp_buf = StreamRegister(8)
        m.submodules.out_buf = out_buf = StreamRegister(8)
        wiring.connect(m, wiring.flipped(self.i), parser.i)
        f = parser.frame
        to_vm = is_vm_command(f.payload.cmd) & (f.payload.error == 0)
        # The engines read the buffer and answer two or more cycles after they take a
        # frame, so the muxes there follow a registered copy of the route: no compare
        # in front of the frame buffer's address or the framer.
        route = Signal()
        m.d.sync += route.eq(to_vm)
        m.d.comb += [cmds.frame.payload.eq(f.payload), vmc.frame.payload.eq(f.payload),
                     cmds.frame.valid.eq(f.valid & ~to_vm), vmc.frame.valid.eq(f.valid & to_vm),
                     f.ready.eq(Mux(route, vmc.frame.ready, cmds.frame.ready)),
                     parser.buf.addr.eq(Mux(route, vmc.buf.addr, cmds.buf.addr)),
                     cmds.buf.data.eq(parser.buf.data), vmc.buf.data.eq(parser.buf.data)]
        for name, dst in (("header", framer.header), ("payload", resp_buf.i)):
            a, b = getattr(cmds, name), getattr(vmc, name)
            m.d.comb += [dst.valid.eq(Mux(route, b.valid, a.valid)),
                         dst.payload.eq(Mux(route, b.payload, a.payload)),
                         a.ready.eq(dst.ready & ~route), b.ready.eq(dst.ready & route)]
        for name in ("load", "peek_req", "run"):
            wiring.connect(m, getattr(vmc, name), getattr(vm, name))
        for name in ("peek", "done"):
            wiring.connect(m, getattr(vm, name), getattr(vmc, name))
        if cmds.share_engine:
            wiring.connect(m, vm.engine, cmds.vm_engine)
            m.d.comb += cmds.vm_owns.eq(route)
        wiring.connect(m, resp_buf.o, framer.payload)
        wiring.connect(m, framer.o, out_buf.i)
        wiring.connect(m, out_buf.o, wiring.flipped(self.o))
        m.d.comb += self.idle.eq(cmds.idle & vmc.idle & framer.idle & ~resp_buf.busy & ~out_buf.busy)
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
    vm : VectorMachine or None
        The vector machine that runs the whole decode step (model offload), or None for
        a matvec-only device (see :class:`DeviceCore`).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    # Nothing to do until the next request byte: the simulated board's harness then
    # sleeps on its input pipe instead of clocking. Unused (and removed) on a board.
    idle: Out(1)

    def __init__(self, config, *, divisor, max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout_bits=2000,
                 weight_store="generic", base3_impl="arith", vm=None):
        self.config, self.divisor, self.max_payload = config, divisor, max_payload
        self.timeout = divisor * frame_timeout_bits
        self.weight_store, self.base3_impl = weight_store, base3_impl
        self.vm = vm
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.core = core = DeviceCore(self.config, max_payload=self.max_payload,
                                              timeout=self.timeout, weight_store=self.weight_store,
                                              base3_impl=self.base3_impl, vm=self.vm)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, core.i)
        wiring.connect(m, core.o, tx.i)
        m.d.comb += self.idle.eq(core.idle & tx.idle & ~rx.o.valid)
        return m
