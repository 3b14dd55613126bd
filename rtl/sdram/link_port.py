"""The SDRAM as a space of the link's memory commands (WRITE_MEM, CHECK_MEM, READ_MEM of
``Space.SDRAM``): the command engine's ``load`` / ``peek`` ports, with that space served
from the SDRAM's streams and every other space passed on to the vector machine."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..vm.layouts import LOAD_DATA_BITS, load_layout, peek_layout
from .controller import StreamsSignature


class SdramLinkPort(wiring.Component):
    """Routes the ``load`` and ``peek_req`` beats of space ``space`` to the SDRAM (a
    one-word write burst, a one-word read burst) and all others to ``vm_load`` /
    ``vm_peek_req``; a peeked word comes back on ``peek`` from wherever it was asked.

    The link is about a thousand times slower than the SDRAM, so one word at a time is
    enough: a load is taken at once and written while the command engine reads its next
    word from the frame; a peek waits for its word (tens of cycles across the clock-domain
    crossing). The command engine keeps at most one peek in flight, and its writes and
    reads reach the SDRAM in order (one port, one command FIFO, one bank machine per
    bank), so a read after a write sees it.

    Parameters
    ----------
    space : int — the SDRAM's space id (``Space.SDRAM``)
    space_bits : int — width of the ``space`` fields
    address_width : int — the SDRAM port's word address (64-bit words)

    Ports
    -----
    load, peek_req : In(stream) — from the command engine (``rtl.vm.layouts``)
    peek : Out(stream of 64 bits)
    vm_load, vm_peek_req : Out(stream) — the other spaces, to the machine
    vm_peek : In(stream of 64 bits)
    sdram : Out(StreamsSignature(address_width, 64))
    busy : Out(1) — a write or read of the SDRAM is under way
    """

    def __init__(self, space, space_bits, address_width):
        self.space = space
        super().__init__({
            "load": In(stream.Signature(load_layout(space_bits))),
            "peek_req": In(stream.Signature(peek_layout(space_bits))),
            "peek": Out(stream.Signature(LOAD_DATA_BITS)),
            "vm_load": Out(stream.Signature(load_layout(space_bits))),
            "vm_peek_req": Out(stream.Signature(peek_layout(space_bits))),
            "vm_peek": In(stream.Signature(LOAD_DATA_BITS)),
            "sdram": Out(StreamsSignature(address_width, LOAD_DATA_BITS)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sd = self.sdram
        addr, word = Signal.like(sd.read_req.payload.addr), Signal(LOAD_DATA_BITS)
        data_sent = Signal()
        load_sd = self.load.payload.space == self.space
        peek_sd = self.peek_req.payload.space == self.space
        m.d.comb += [
            self.vm_load.payload.eq(self.load.payload),
            self.vm_peek_req.payload.eq(self.peek_req.payload),
            sd.write_req.payload.addr.eq(addr), sd.write_req.payload.count.eq(1),
            sd.write_data.payload.eq(word),
            sd.read_req.payload.addr.eq(addr), sd.read_req.payload.count.eq(1),
            self.peek.payload.eq(self.vm_peek.payload),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [
                    self.vm_load.valid.eq(self.load.valid & ~load_sd),
                    self.load.ready.eq(load_sd | self.vm_load.ready),
                    self.vm_peek_req.valid.eq(self.peek_req.valid & ~peek_sd),
                    self.peek_req.ready.eq(peek_sd | self.vm_peek_req.ready),
                    self.peek.valid.eq(self.vm_peek.valid),
                    self.vm_peek.ready.eq(self.peek.ready),
                ]
                with m.If(self.load.valid & load_sd):
                    m.d.sync += [addr.eq(self.load.payload.addr), word.eq(self.load.payload.data),
                                 data_sent.eq(0)]
                    m.next = "WRITE"
                with m.Elif(self.peek_req.valid & peek_sd):
                    m.d.sync += addr.eq(self.peek_req.payload.addr)
                    m.next = "READ_REQ"
            with m.State("WRITE"):
                # the writer takes the word first and the burst when its command is issued
                m.d.comb += [self.busy.eq(1), sd.write_data.valid.eq(~data_sent),
                             sd.write_req.valid.eq(1)]
                with m.If(sd.write_data.ready):
                    m.d.sync += data_sent.eq(1)
                with m.If(sd.write_req.ready):
                    m.next = "IDLE"
            with m.State("READ_REQ"):
                m.d.comb += [self.busy.eq(1), sd.read_req.valid.eq(1)]
                with m.If(sd.read_req.ready):
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.comb += [self.busy.eq(1), self.peek.valid.eq(sd.read_data.valid),
                             self.peek.payload.eq(sd.read_data.payload),
                             sd.read_data.ready.eq(self.peek.ready)]
                with m.If(sd.read_data.valid & self.peek.ready):
                    m.next = "IDLE"
        return m
