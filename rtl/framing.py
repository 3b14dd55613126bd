"""Frames on the byte streams: the parser (bytes -> checked frames) and the framer
(header + payload bytes -> framed bytes with CRC). Layout: ternary_core.protocol."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ternary_core import protocol as P


def frame_layout():
    """A received frame: its header, the first argument bytes (little-endian), and
    ``error`` (a :class:`~ternary_core.protocol.LinkStatus`, non-zero for a NACK)."""
    return data.StructLayout({"seq": 8, "cmd": 8, "length": 16, "args": 8 * P.ARGS_MAX,
                              "error": 8})


def header_layout():
    return data.StructLayout({"seq": 8, "cmd": 8, "length": 16})


class FrameBufferReadSignature(wiring.Signature):
    """Read access to the received payload: ``data`` is byte ``addr``, one cycle later."""

    def __init__(self, addr_bits):
        super().__init__({"addr": Out(unsigned(addr_bits)), "data": In(8)})


class FrameParser(wiring.Component):
    """Find frames in a byte stream, check them, keep the payload for the command engine.

    The stream is unstuffed on the fly (ESC x -> x ^ 0x20) and a SYNC starts a new frame
    from any state, so garbage and broken frames cost nothing more than themselves. A
    frame longer than ``max_payload`` or with a bad CRC becomes an ``error`` frame (the
    command engine sends a NACK). If the line falls silent for ``timeout`` cycles in the
    middle of a frame, the partial frame is dropped. While a frame waits on ``frame``
    (until its handshake), no byte is taken, so its payload stays put.

    Parameters
    ----------
    max_payload : int
    timeout : int — cycles
    read_register : bool
        Register the payload buffer's output (read latency 2, not 1): its block RAM's
        clock-to-out and the route to the command engine's write registers then have a
        cycle each (the ULX3S at 100 MHz).

    Ports
    -----
    i : In(stream of bytes)
    frame : Out(stream of frame_layout)
    buf : In(FrameBufferReadSignature) — the payload of the frame on ``frame``, read
        latency :attr:`read_latency`
    """

    def __init__(self, max_payload, timeout, *, read_register=False):
        if not 8 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be in 8..65535, not {max_payload}")
        self.max_payload, self.timeout = max_payload, timeout
        self.read_register = bool(read_register)
        self.addr_bits = max(1, (max_payload - 1).bit_length())
        super().__init__({
            "i": In(stream.Signature(8)),
            "frame": Out(stream.Signature(frame_layout())),
            "buf": In(FrameBufferReadSignature(self.addr_bits)),
        })

    @property
    def read_latency(self):
        """Cycles from ``buf.addr`` to its byte on ``buf.data``."""
        return 2 if self.read_register else 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=self.max_payload, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        m.d.comb += rd.addr.eq(self.buf.addr)
        if self.read_register:
            m.d.sync += self.buf.data.eq(rd.data)
        else:
            m.d.comb += self.buf.data.eq(rd.data)
        m.submodules.crc = crc16 = getattr(catalog, P.FRAME_CRC)(data_width=8).create()

        f = self.frame.payload
        count = Signal(16)
        # Which argument byte the next payload byte is (one-hot, zero past the last), and
        # whether it is the payload's last byte: both kept in registers, as comparing the
        # count there and then was the iCEBreaker's longest path at 36 MHz.
        arg_at = Signal(P.ARGS_MAX)
        last_byte = Signal()
        idle = Signal(range(self.timeout + 1))
        esc = Signal()
        raw = self.i.payload
        take = self.i.valid & self.i.ready
        is_sync = take & (raw == P.SYNC)
        is_esc = take & (raw == P.ESC)
        byte = Mux(esc, raw ^ P.ESC_XOR, raw)
        got = take & ~is_sync & ~is_esc  # one unstuffed frame byte this cycle
        m.d.comb += [crc16.data.eq(byte), wr.data.eq(byte), wr.addr.eq(count)]
        with m.If(self.frame.valid & self.frame.ready):
            m.d.sync += self.frame.valid.eq(0)
        with m.If(take):
            m.d.sync += [esc.eq(is_esc), idle.eq(0)]

        def restart():
            # A SYNC starts a new frame from whichever state takes it. (Called last in
            # each state that takes bytes, so its m.next wins.)
            with m.If(is_sync):
                m.d.comb += crc16.start.eq(1)
                m.d.sync += [count.eq(0), f.args.eq(0), arg_at.eq(1)]
                m.next = "SEQ"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.i.ready.eq(1)
                restart()
            for state, field_, nxt in (("SEQ", f.seq, "CMD"), ("CMD", f.cmd, "LEN0"),
                                       ("LEN0", f.length[:8], "LEN1")):
                with m.State(state):
                    self._in_frame(m, got, idle, crc16)
                    with m.If(got):
                        m.d.sync += field_.eq(byte)
                        m.next = nxt
                    restart()
            with m.State("LEN1"):
                self._in_frame(m, got, idle, crc16)
                with m.If(got):
                    m.d.sync += f.length[8:].eq(byte)
                    length = Cat(f.length[:8], byte)
                    with m.If(length > self.max_payload):
                        m.d.sync += [f.error.eq(P.LinkStatus.BAD_LENGTH), self.frame.valid.eq(1)]
                        m.next = "WAIT"
                    with m.Elif(length == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.d.sync += last_byte.eq(length == 1)
                        m.next = "PAYLOAD"
                restart()
            with m.State("PAYLOAD"):
                self._in_frame(m, got, idle, crc16)
                with m.If(got):
                    m.d.comb += wr.en.eq(1)
                    for i in range(P.ARGS_MAX):
                        with m.If(arg_at[i]):
                            m.d.sync += f.args[8 * i: 8 * i + 8].eq(byte)
                    m.d.sync += [count.eq(count + 1), arg_at.eq(arg_at << 1),
                                 last_byte.eq(count + 2 == f.length)]
                    with m.If(last_byte):
                        m.next = "CRC0"
                restart()
            with m.State("CRC0"):
                self._in_frame(m, got, idle, crc16)
                with m.If(got):
                    m.next = "CRC1"
                restart()
            with m.State("CRC1"):
                self._in_frame(m, got, idle, crc16)
                with m.If(got):
                    m.next = "CHECK"
                restart()
            with m.State("CHECK"):  # the CRC register has taken the whole frame now
                m.d.sync += [f.error.eq(Mux(crc16.match_detected, P.LinkStatus.OK, P.LinkStatus.BAD_CRC)),
                             self.frame.valid.eq(1)]
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(~self.frame.valid | self.frame.ready):
                    m.next = "HUNT"
        return m

    def _in_frame(self, m, got, idle, crc16):
        """In a mid-frame state: take bytes into the CRC; give up after ``timeout`` idle cycles."""
        m.d.comb += [self.i.ready.eq(1), crc16.valid.eq(got)]
        with m.If(~self.i.valid):
            with m.If(idle == self.timeout):
                m.next = "HUNT"
            with m.Else():
                m.d.sync += idle.eq(idle + 1)


class Framer(wiring.Component):
    """Frame a response: take a header, then ``length`` payload bytes; emit SYNC, then
    the header, payload and CRC (big-endian), byte-stuffed, on ``o``.

    Ports
    -----
    header : In(stream of header_layout)
    payload : In(stream of bytes)
    o : Out(stream of bytes)
    """

    def __init__(self):
        super().__init__({
            "header": In(stream.Signature(header_layout())),
            "payload": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc16 = getattr(catalog, P.FRAME_CRC)(data_width=8).create()
        hdr = Signal(header_layout())
        left = Signal(16)
        # The byte the current state wants to send; the stuffing below turns it into
        # one or two bytes on ``o`` and says when it has been sent (``done``).
        cur, cur_valid, body = Signal(8), Signal(), Signal()
        esc_sent = Signal()
        # Whether ``cur`` needs stuffing, decided per source in parallel with the state
        # mux rather than after it, and ``left == 0`` kept in a register: together they
        # were most of the iCEBreaker's longest path (payload -> ready, 12 LUTs).
        special = Signal()
        hdr_special = Signal(4)  # the header bytes' own, kept when the header is taken
        need_esc = body & special
        left_zero = Signal()
        m.d.comb += [
            self.o.valid.eq(cur_valid),
            self.o.payload.eq(Mux(need_esc & ~esc_sent, P.ESC, Mux(need_esc, cur ^ P.ESC_XOR, cur))),
        ]
        out = self.o.valid & self.o.ready
        done = out & (~need_esc | esc_sent)
        with m.If(out):
            m.d.sync += esc_sent.eq(need_esc & ~esc_sent)
        m.d.comb += crc16.data.eq(cur)
        m.d.sync += left_zero.eq(left == 0)

        def is_special(v):
            return (v == P.SYNC) | (v == P.ESC)

        with m.FSM() as fsm:
            m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~self.header.valid)
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [hdr.eq(self.header.payload), left.eq(self.header.payload.length)]
                    hp = self.header.payload
                    m.d.sync += hdr_special.eq(Cat(is_special(hp.seq), is_special(hp.cmd),
                                                   is_special(hp.length[:8]), is_special(hp.length[8:])))
                    m.d.sync += left_zero.eq(self.header.payload.length == 0)
                    m.d.comb += crc16.start.eq(1)
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [cur.eq(P.SYNC), cur_valid.eq(1)]
                with m.If(done):
                    m.next = "SEQ"
            for i, (state, value, nxt) in enumerate((("SEQ", hdr.seq, "CMD"), ("CMD", hdr.cmd, "LEN0"),
                                                     ("LEN0", hdr.length[:8], "LEN1"),
                                                     ("LEN1", hdr.length[8:], "PAYLOAD"))):
                with m.State(state):
                    m.d.comb += [cur.eq(value), cur_valid.eq(1), body.eq(1), crc16.valid.eq(done),
                                 special.eq(hdr_special[i])]
                    with m.If(done):
                        m.next = nxt
            with m.State("PAYLOAD"):
                with m.If(left_zero):
                    m.next = "CRC1"
                with m.Else():
                    m.d.comb += [cur.eq(self.payload.payload), cur_valid.eq(self.payload.valid),
                                 body.eq(1), self.payload.ready.eq(done), crc16.valid.eq(done),
                                 special.eq(is_special(self.payload.payload))]
                    with m.If(done):
                        m.d.sync += left.eq(left - 1)
                        m.d.sync += left_zero.eq(left == 1)
            for state, value, nxt in (("CRC1", crc16.crc[8:], "CRC0"), ("CRC0", crc16.crc[:8], "IDLE")):
                with m.State(state):
                    m.d.comb += [cur.eq(value), cur_valid.eq(1), body.eq(1), special.eq(is_special(value))]
                    with m.If(done):
                        m.next = nxt
        return m
