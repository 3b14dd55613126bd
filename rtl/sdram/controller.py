"""LiteDRAM's SDR controller behind Amaranth streams: the core, a burst reader and a
burst writer over its one native port.

:class:`LiteDramCore` instantiates the Verilog of :func:`rtl.sdram.litedram_core.litedram_verilog`
(add :attr:`LiteDramCore.verilog` to the design's sources). :class:`BurstReader` turns
a request (first address, word count) into a stream of words at the memory's pace;
:class:`BurstWriter` takes a request and a stream of words. :class:`SdramStreams` joins
them on the port (writes first when both have a command ready).
"""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .litedram_core import CDC_RDATA_DEPTH, litedram_verilog


def command_layout(address_width):
    return data.StructLayout({"we": 1, "addr": address_width})


def write_layout(data_width):
    return data.StructLayout({"data": data_width, "we": data_width // 8})


def burst_layout(address_width, count_width):
    """A burst: ``count`` words (1 or more) from word address ``addr`` upwards."""
    return data.StructLayout({"addr": address_width, "count": count_width})


class PortSignature(wiring.Signature):
    """LiteDRAM's native port as streams, from the port user's side: ``cmd`` and
    ``wdata`` go out, ``rdata`` comes in (with no ``ready``: the port does not wait, so a
    reader issues a read only when it has room for the data)."""

    def __init__(self, address_width, data_width):
        self.address_width, self.data_width = address_width, data_width
        super().__init__({
            "cmd": Out(stream.Signature(command_layout(address_width))),
            "wdata": Out(stream.Signature(write_layout(data_width))),
            "rdata": In(stream.Signature(data_width, always_ready=True)),
        })


class LiteDramCore(wiring.Component):
    """The generated LiteDRAM core (controller, PHY or its model, power-up sequencer).

    Parameters
    ----------
    variant : ``"model"`` (simulation: the memory and its timing checker) or ``"board"``.
    module, clk_freq : the SDRAM part and the clock the controller runs at
        (``controller_domain``).
    rate : ``"1:1"`` (the SDRAM at ``clk_freq``, a ``data_width``-bit port) or ``"1:2"`` (the
        SDRAM at twice ``clk_freq``: the port is twice as wide; on the board the PHY runs in
        ``fast_domain``, a clock at twice the controller's and in phase with it; by default
        ``<controller_domain>2x``).
    controller_domain : the controller's clock domain. ``"sync"`` (the default): everything
        in one domain. Any other name: the controller runs there and the port stays in
        ``sync``, at any frequency, through LiteDRAM's clock-domain crossing (asynchronous
        FIFOs; ``init_done`` crosses through a two-flop synchronizer, so no command goes in
        before the power-up sequence is over as seen from ``sync``). Either domain's reset
        resets the whole core (the controller runs its power-up sequence again), released
        two cycles of each clock after the later of the two, so they may be released in any
        order; assert both together (from one source, such as a PLL's lock) for at least
        three cycles of the slower clock, since the port's users in ``sync`` start afresh
        with the core. Write data go into the port before their commands
        (:class:`BurstWriter`'s ``data_first``).
    port_data_width : the port's word (a power-of-two multiple of the controller's, default
        the controller's): each wide word is that many controller words at consecutive
        addresses, lowest bits first, converted on the controller's side at its full rate.
        With a slower ``sync`` this is what lets the port carry the SDRAM's bandwidth (so it
        needs a ``controller_domain`` of its own).
    pins : (``board``) the board's ``sdram`` resource requested with ``dir="-"`` for every
        subsignal (the core has its own I/O registers); its ``clk`` is the caller's to
        drive (the SDRAM clock is a phase-shifted copy of the controller's, see
        :class:`boards.sdram_clocks.SdramClocks`).

    Members
    -------
    controller_domain : as given.
    port : ``In(PortSignature)`` — the native port, in ``sync`` (commands are taken only
        after ``init_done``).
    init_done : the power-up sequence is over (in ``sync``).
    timing_violation : (``model``) sticky: the timing checker saw a violation (in ``sync``).
    """

    def __init__(self, *, variant="model", module="MT48LC16M16", clk_freq=50e6, name="litedram_sdr",
                 pins=None, rate="1:1", controller_domain="sync", fast_domain=None,
                 port_data_width=None, **generate_args):
        if (variant == "board") != (pins is not None):
            raise ValueError("LiteDramCore: pins must be given for the board variant, and only for it")
        if not isinstance(controller_domain, str) or not controller_domain:
            raise TypeError(f"controller_domain must be a clock domain's name, not {controller_domain!r}")
        self._pins, self.controller_domain = pins, controller_domain
        self._fast_domain = fast_domain or f"{controller_domain}2x"
        self.verilog, self._ports, self.geometry = litedram_verilog(
            variant=variant, module=module, clk_freq=clk_freq, name=name, rate=rate,
            user_domain=controller_domain != "sync", port_data_width=port_data_width,
            **generate_args)
        self._name, self._variant = name, variant
        g = self.geometry
        members = {
            "port": In(PortSignature(g.address_width, g.data_width)),
            "init_done": Out(1),
            "timing_violation": Out(1),
        }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        port = self.port
        violation = Signal() if self._variant == "model" else None
        # no command before the power-up sequence is over, either way of the handshake (the
        # crossbar's ready does not wait for init)
        cmd_ready = Signal()
        m.d.comb += port.cmd.ready.eq(cmd_ready & self.init_done)
        conns = dict(
            i_sys_clk=ClockSignal(self.controller_domain),
            i_sys_rst=ResetSignal(self.controller_domain),
            o_init_done=self.init_done,
            i_cmd_valid=port.cmd.valid & self.init_done, o_cmd_ready=cmd_ready,
            i_cmd_we=port.cmd.payload.we, i_cmd_addr=port.cmd.payload.addr,
            i_wdata_valid=port.wdata.valid, o_wdata_ready=port.wdata.ready,
            i_wdata_data=port.wdata.payload.data, i_wdata_we=port.wdata.payload.we,
            o_rdata_valid=port.rdata.valid, o_rdata_data=port.rdata.payload,
        )
        if violation is not None:
            conns["o_timing_violation"] = self.timing_violation
        if "user_clk" in self._ports:
            conns.update(i_user_clk=ClockSignal("sync"), i_user_rst=ResetSignal("sync"))
        if "sys2x_clk" in self._ports:
            conns.update(i_sys2x_clk=ClockSignal(self._fast_domain),
                         i_sys2x_rst=ResetSignal(self._fast_domain))
        if self._pins is not None:
            # amaranth-boards' names for the SDRAM subsignals; raw ports, so the active-low
            # ones (cs, we, ras, cas) take the core's *_n outputs as they are
            p = self._pins
            conns.update(o_sdram_a=p.a.io, o_sdram_ba=p.ba.io, o_sdram_cs_n=p.cs.io,
                         o_sdram_cke=p.clk_en.io, o_sdram_ras_n=p.ras.io, o_sdram_cas_n=p.cas.io,
                         o_sdram_we_n=p.we.io, io_sdram_dq=p.dq.io, o_sdram_dm=p.dqm.io)
        m.submodules.core = Instance(self._name, **conns)
        return m


class BurstReader(wiring.Component):
    """Reads bursts: each request on ``req`` gives ``count`` words on ``o``, in order.

    A request is taken when the previous one's reads are all issued (its words may still
    be on their way), so a consumer can ask for the next burst, and keep taking words,
    while one runs. Reads are issued back to back while the output FIFO (``fifo_depth``
    words) has room for every word in flight, so a consumer that keeps up gets one word
    a cycle when the memory gives one; a slow consumer only slows the reads.
    """

    def __init__(self, address_width, data_width, *, count_width=16, fifo_depth=32):
        self.fifo_depth = fifo_depth
        super().__init__({
            "req": In(stream.Signature(burst_layout(address_width, count_width))),
            "port": Out(PortSignature(address_width, data_width)),
            "o": Out(stream.Signature(data_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.fifo_depth
        m.submodules.fifo = fifo = SyncFIFO(width=len(self.o.payload), depth=depth)
        in_flight = Signal(range(depth + 1))
        addr = Signal.like(self.req.payload.addr)
        left = Signal.like(self.req.payload.count)
        issue = self.port.cmd.valid & self.port.cmd.ready
        # room for the read about to be issued: the FIFO's words plus those in flight
        room = (fifo.level + in_flight) < depth
        m.d.comb += [
            self.port.cmd.valid.eq((left != 0) & room),
            self.port.cmd.payload.we.eq(0),
            self.port.cmd.payload.addr.eq(addr),
            self.req.ready.eq((left == 0) | (issue & (left == 1))),
            fifo.w_en.eq(self.port.rdata.valid),
            fifo.w_data.eq(self.port.rdata.payload),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            self.busy.eq((left != 0) | (in_flight != 0) | fifo.r_rdy),
        ]
        m.d.sync += in_flight.eq(in_flight + issue - self.port.rdata.valid)
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += [addr.eq(self.req.payload.addr), left.eq(self.req.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
        return m


class BurstWriter(wiring.Component):
    """Writes bursts: each request on ``req`` takes ``count`` words from ``i`` and writes
    them from ``addr`` upwards, a word a cycle when the memory takes one.

    LiteDRAM's controller takes a write's data on the cycle it issues the write, some
    cycles after it took the command, and does not look at ``wdata.valid``. On the
    controller's own port (``data_first=False``) the command goes first and its word
    waits here (``fifo_depth`` words) for the port to ask. Behind a clock-domain crossing
    (``data_first=True``) the port's ``wdata`` is a FIFO that takes words at once, and a
    command that crossed before its word would have the controller write whatever is there:
    each word goes into the port first and its command follows on a later cycle, so it
    reaches the controller no earlier than its word.
    """

    def __init__(self, address_width, data_width, *, count_width=16, fifo_depth=8, data_first=False):
        self.fifo_depth, self.data_first = fifo_depth, data_first
        super().__init__({
            "req": In(stream.Signature(burst_layout(address_width, count_width))),
            "i": In(stream.Signature(data_width)),
            "port": Out(PortSignature(address_width, data_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        if self.data_first:
            return self._elaborate_data_first()
        m = Module()
        width = len(self.i.payload)
        # the port asks for a write's data after it takes the command: the data waits here
        m.submodules.fifo = fifo = SyncFIFO(width=width, depth=self.fifo_depth)
        issued = Signal.like(self.req.payload.count)
        issue = self.port.cmd.valid & self.port.cmd.ready
        last = issued + 1 == self.req.payload.count
        m.d.comb += [
            self.port.cmd.valid.eq(self.req.valid & self.i.valid & fifo.w_rdy
                                   & (self.req.payload.count != 0)),
            self.port.cmd.payload.we.eq(1),
            self.port.cmd.payload.addr.eq(self.req.payload.addr + issued),
            self.i.ready.eq(issue),
            fifo.w_en.eq(issue),
            fifo.w_data.eq(self.i.payload),
            self.req.ready.eq((issue & last) | (self.req.valid & (self.req.payload.count == 0))),
            self.port.wdata.valid.eq(fifo.r_rdy),
            self.port.wdata.payload.data.eq(fifo.r_data),
            self.port.wdata.payload.we.eq(-1),
            fifo.r_en.eq(self.port.wdata.ready),
            self.busy.eq(self.req.valid | fifo.r_rdy),
        ]
        with m.If(issue):
            m.d.sync += issued.eq(Mux(last, 0, issued + 1))
        return m

    def _elaborate_data_first(self):
        m = Module()
        count = self.req.payload.count
        issued = Signal.like(count)      # commands of this burst issued
        ahead = Signal.like(count)       # words in the port whose commands are not issued yet
        issue = self.port.cmd.valid & self.port.cmd.ready
        last = issued + 1 == count
        more = self.req.valid & (issued + ahead < count)
        take = self.i.valid & self.i.ready
        m.d.comb += [
            self.port.wdata.valid.eq(more & self.i.valid),
            self.port.wdata.payload.data.eq(self.i.payload),
            self.port.wdata.payload.we.eq(-1),
            self.i.ready.eq(more & self.port.wdata.ready),
            # a register, so a command is issued at the earliest the cycle after its word
            self.port.cmd.valid.eq(ahead != 0),
            self.port.cmd.payload.we.eq(1),
            self.port.cmd.payload.addr.eq(self.req.payload.addr + issued),
            self.req.ready.eq((issue & last) | (self.req.valid & (count == 0))),
            self.busy.eq(self.req.valid | (ahead != 0)),
        ]
        m.d.sync += ahead.eq(ahead + take - issue)
        with m.If(issue):
            m.d.sync += issued.eq(Mux(last, 0, issued + 1))
        return m


class StreamsSignature(wiring.Signature):
    """The user side of :class:`SdramStreams`, from its user's side (the vector machine's
    XFER unit, the command engine's SDRAM uploads): burst requests and write data go out,
    read data come in, in request order."""

    def __init__(self, address_width, data_width, count_width=16):
        super().__init__({
            "write_req": Out(stream.Signature(burst_layout(address_width, count_width))),
            "write_data": Out(stream.Signature(data_width)),
            "read_req": Out(stream.Signature(burst_layout(address_width, count_width))),
            "read_data": In(stream.Signature(data_width)),
        })


class SdramStreams(wiring.Component):
    """A :class:`BurstWriter` and a :class:`BurstReader` sharing one core's port (the
    writer's command first when both have one)."""

    def __init__(self, core, *, count_width=16, read_fifo_depth=32):
        g = core.geometry
        if g.user_domain and read_fifo_depth > CDC_RDATA_DEPTH:
            # the crossing's read FIFO does not wait either: it must hold every read in flight
            raise ValueError(f"read_fifo_depth must be at most {CDC_RDATA_DEPTH} (the clock-domain "
                             f"crossing's read FIFO), not {read_fifo_depth}")
        self.core = core
        self.writer = BurstWriter(g.address_width, g.data_width, count_width=count_width,
                                  data_first=g.user_domain)
        self.reader = BurstReader(g.address_width, g.data_width, count_width=count_width,
                                  fifo_depth=read_fifo_depth)
        super().__init__({
            "write_req": In(stream.Signature(burst_layout(g.address_width, count_width))),
            "write_data": In(stream.Signature(g.data_width)),
            "read_req": In(stream.Signature(burst_layout(g.address_width, count_width))),
            "read_data": Out(stream.Signature(g.data_width)),
            "init_done": Out(1),
            "timing_violation": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.writer = writer = self.writer
        m.submodules.reader = reader = self.reader
        wiring.connect(m, wiring.flipped(self.write_req), writer.req)
        wiring.connect(m, wiring.flipped(self.write_data), writer.i)
        wiring.connect(m, wiring.flipped(self.read_req), reader.req)
        wiring.connect(m, reader.o, wiring.flipped(self.read_data))
        port = core.port
        use_writer = writer.port.cmd.valid
        chosen = Mux(use_writer, writer.port.cmd.payload.as_value(), reader.port.cmd.payload.as_value())
        m.d.comb += [
            port.cmd.valid.eq(writer.port.cmd.valid | reader.port.cmd.valid),
            port.cmd.payload.eq(chosen),
            writer.port.cmd.ready.eq(port.cmd.ready & use_writer),
            reader.port.cmd.ready.eq(port.cmd.ready & ~use_writer),
            port.wdata.valid.eq(writer.port.wdata.valid),
            port.wdata.payload.eq(writer.port.wdata.payload),
            writer.port.wdata.ready.eq(port.wdata.ready),
            reader.port.rdata.valid.eq(port.rdata.valid),
            reader.port.rdata.payload.eq(port.rdata.payload),
            self.init_done.eq(core.init_done),
            self.timing_violation.eq(core.timing_violation),
        ]
        return m
