"""The device top: UART -> frame parser -> command engine -> framer -> UART."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.offload.isa import SDRAM_WORD_BYTES, Space

from .command_engine import CommandEngine
from .framing import FrameParser, Framer
from .stream_register import StreamRegister
from .uart import UartRx, UartTx
from .vm.spaces import vm_spaces
from .vm_commands import VmCommandEngine, is_vm_command

DEFAULT_MAX_PAYLOAD = 512


def check_sdram(vm, sdram):
    """Refuse an SDRAM core the device cannot use with ``vm`` (a ValueError naming it)."""
    limits = getattr(vm, "limits", None)
    if vm is None or limits is None or not limits.sdram:
        raise ValueError("sdram needs a vector machine whose limits have sdram_words > 0")
    g = sdram.geometry
    if g.data_width != 8 * SDRAM_WORD_BYTES:
        raise ValueError(f"sdram: the port's word must be {8 * SDRAM_WORD_BYTES} bits (the ISA's "
                         f"SDRAM word), not {g.data_width} (LiteDramCore(port_data_width=64))")
    if limits.sdram_words > 1 << g.address_width:
        raise ValueError(f"sdram: sdram_words {limits.sdram_words} is more than the "
                         f"{1 << g.address_width} words of the {g.module}")


class DeviceCore(wiring.Component):
    """The device on byte streams: frame parser -> command engine -> framer.

    With a vector machine (``vm``, protocol version 3), its commands go to a
    :class:`~rtl.vm_commands.VmCommandEngine` beside the command engine, and the
    machine drives the matvec engine while it runs (:func:`connect_vm`).

    With ``sdram`` (a :class:`~rtl.sdram.controller.LiteDramCore` on a 64-bit port; the
    machine's ``limits.sdram_words`` > 0) the device carries the SDRAM behind
    :class:`~rtl.sdram.controller.SdramStreams`: the link's memory commands reach it as
    ``Space.SDRAM`` (:class:`~rtl.sdram.link_port.SdramLinkPort`), and the machine's
    ``sdram`` port drives the streams while the machine runs. The caller adds
    ``sdram.verilog`` to the design's sources and clocks the core's domains.

    Ports: ``i`` (request bytes in), ``o`` (response bytes out), ``idle``; with ``sdram``,
    ``sdram_timing_violation`` (the model core's sticky flag; 0 on a board)."""

    def __init__(self, config, *, max_payload=DEFAULT_MAX_PAYLOAD, timeout=100_000,
                 weight_store="generic", base3_impl="arith", vm=None, sdram=None):
        self.config, self.max_payload, self.timeout = config, max_payload, timeout
        self.weight_store, self.base3_impl = weight_store, base3_impl
        self.vm = vm
        if sdram is not None:
            check_sdram(vm, sdram)
        self.sdram = sdram
        ports = {"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)), "idle": Out(1)}
        if sdram is not None:
            ports["sdram_timing_violation"] = Out(1)
        super().__init__(ports)

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
                                                     "engine" in self.vm.signature.members,
                                                     word_writes=self._vm_has("wgt"))
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

    def _vm_has(self, port):
        """Whether the vector machine has ``port`` (a machine built before XFER has
        neither ``sdram`` nor ``wgt``)."""
        return self.vm is not None and port in self.vm.signature.members

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
        idle = cmds.idle & vmc.idle & framer.idle & ~resp_buf.busy & ~out_buf.busy
        if self.sdram is not None:
            idle &= ~self._connect_sdram(m, vmc, vm)
        # in this order, and the SDRAM's ports left to _connect_sdram: the names of the
        # Verilog's signals follow it
        memory_ports = () if self.sdram is not None else ("load", "peek_req")
        for name in (*memory_ports, "run"):
            wiring.connect(m, getattr(vmc, name), getattr(vm, name))
        for name in ("peek" if self.sdram is None else None, "done"):
            if name is not None:
                wiring.connect(m, getattr(vm, name), getattr(vmc, name))
        if cmds.share_engine:
            wiring.connect(m, vm.engine, cmds.vm_engine)
            m.d.comb += cmds.vm_owns.eq(route)
        if self._vm_has("wgt"):
            # field by field: the machine may size its address from its limits
            m.d.comb += [cmds.vm_wgt.addr.eq(vm.wgt.addr), cmds.vm_wgt.data.eq(vm.wgt.data),
                         cmds.vm_wgt.en.eq(vm.wgt.en)]
        wiring.connect(m, resp_buf.o, framer.payload)
        wiring.connect(m, framer.o, out_buf.i)
        wiring.connect(m, out_buf.o, wiring.flipped(self.o))
        m.d.comb += self.idle.eq(idle)
        return m

    def _connect_sdram(self, m, vmc, vm):
        """The SDRAM's streams, the command engine's ``load`` / ``peek`` through the
        :class:`SdramLinkPort`, and the streams handed to the machine's ``sdram`` port
        from its ``run`` beat to its ``done`` beat (a machine without the port, one
        built before XFER, leaves its side tied off). Returns what keeps the device from
        being idle."""
        from .sdram.controller import SdramStreams
        from .sdram.link_port import SdramLinkPort

        m.submodules.sdram = streams = SdramStreams(self.sdram)
        m.submodules.sdram_link = link = SdramLinkPort(
            int(Space.SDRAM), vmc.spaces.space_bits, self.sdram.geometry.address_width)
        # the command engine's memory ports through the link port, then on to the machine
        for source, sink in ((vmc.load, link.load), (vmc.peek_req, link.peek_req), (link.peek, vmc.peek),
                             (link.vm_load, vm.load), (link.vm_peek_req, vm.peek_req), (vm.peek, link.vm_peek)):
            wiring.connect(m, source, sink)
        m.d.comb += self.sdram_timing_violation.eq(streams.timing_violation)
        users = [link.sdram]
        running = Signal()
        if self._vm_has("sdram"):
            with m.If(vmc.run.valid & vmc.run.ready):
                m.d.sync += running.eq(1)
            with m.If(vm.done.valid & vm.done.ready):
                m.d.sync += running.eq(0)
            users.append(vm.sdram)
        mux_streams(m, running, users, streams)
        # busy until the SDRAM's power-up sequence is over: the simulated board clocks
        # through it at start, so no request (no RUN's cycle count) waits for it
        return link.busy | ~streams.init_done


def mux_streams(m, select, users, streams):
    """Give ``streams`` (an :class:`~rtl.sdram.controller.SdramStreams`) to ``users[select]``
    (``StreamsSignature`` ports of their users, whose addresses may be narrower): a
    user not selected sees no ``ready`` and no ``valid``."""
    for i, user in enumerate(users):
        chosen = select == i
        for name in ("write_req", "write_data", "read_req"):
            src, dst = getattr(user, name), getattr(streams, name)
            m.d.comb += src.ready.eq(dst.ready & chosen)
            with m.If(chosen):
                m.d.comb += dst.valid.eq(src.valid)
                if name == "write_data":
                    m.d.comb += dst.payload.eq(src.payload)
                else:     # field by field: the addresses' widths differ
                    m.d.comb += [dst.payload.addr.eq(src.payload.addr),
                                 dst.payload.count.eq(src.payload.count)]
        m.d.comb += [user.read_data.valid.eq(streams.read_data.valid & chosen),
                     user.read_data.payload.eq(streams.read_data.payload)]
        with m.If(chosen):
            m.d.comb += streams.read_data.ready.eq(user.read_data.ready)


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
    sdram : LiteDramCore or None
        The SDRAM (see :class:`DeviceCore`); adds ``sdram_timing_violation``.
    """

    # rx, tx; idle: nothing to do until the next request byte: the simulated board's
    # harness then sleeps on its input pipe instead of clocking. Unused (and removed) on
    # a board.

    def __init__(self, config, *, divisor, max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout_bits=2000,
                 weight_store="generic", base3_impl="arith", vm=None, sdram=None):
        self.config, self.divisor, self.max_payload = config, divisor, max_payload
        self.timeout = divisor * frame_timeout_bits
        self.weight_store, self.base3_impl = weight_store, base3_impl
        self.vm, self.sdram = vm, sdram
        ports = {"rx": In(1, init=1), "tx": Out(1, init=1), "idle": Out(1)}
        if sdram is not None:
            ports["sdram_timing_violation"] = Out(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.core = core = DeviceCore(self.config, max_payload=self.max_payload,
                                              timeout=self.timeout, weight_store=self.weight_store,
                                              base3_impl=self.base3_impl, vm=self.vm,
                                              sdram=self.sdram)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        if self.sdram is not None:
            m.d.comb += self.sdram_timing_violation.eq(core.sdram_timing_violation)
        wiring.connect(m, rx.o, core.i)
        wiring.connect(m, core.o, tx.i)
        m.d.comb += self.idle.eq(core.idle & tx.idle & ~rx.o.valid)
        return m
