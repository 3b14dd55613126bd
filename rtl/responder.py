"""The request/response scaffolding both command engines share
(:class:`~rtl.command_engine.CommandEngine` and :class:`~rtl.vm_commands.VmCommandEngine`):
the response header, the status byte and what follows it, the bytes of a shift register
sent or run through CRC-32, the frame buffer's read states and the hand-back of the frame.

Each engine keeps its own state machine and calls these helpers inside it, at the places
where it wrote the same states by hand before. The helpers' registers keep the names the
engines gave them, and they emit their statements in the engines' order: the Verilog of
every build is what it was.
"""

from contextlib import contextmanager

from amaranth import Signal

from ternary_core.protocol import LinkStatus

# What follows the status byte: the two kinds both engines have. An engine numbers its
# own kinds from FIRST_KIND on.
KIND_NONE, KIND_WORD32 = 0, 1
FIRST_KIND = 2


class Responder:
    """Response helpers for an engine's state machine in module ``m``.

    Parameters
    ----------
    m : Module
    engine : the engine component, with the ports ``frame``, ``buf``, ``header`` and
        ``payload`` and the attribute ``buf_read_latency`` (1 or 2 cycles).
    idx, lane, shreg : Signal
        The engine's payload byte index, byte lane and shift register (their widths are
        the engine's).
    kinds : int
        How many kinds of response body the engine has (``extra``'s range).

    Attributes
    ----------
    status, resp_len, extra, word32 : Signal
        The response's status byte, payload length, kind of body, and the 32-bit value a
        ``KIND_WORD32`` body sends (loaded into ``shreg`` with the status byte).
    """

    def __init__(self, m, engine, *, idx, lane, shreg, kinds):
        self.m, self.engine = m, engine
        self.idx, self.lane, self.shreg = idx, lane, shreg
        self.status = Signal(8, name="status")
        self.resp_len = Signal(16, name="resp_len")
        self.extra = Signal(range(kinds), name="extra")
        self.word32 = Signal(32, name="word32")

    def respond(self, code, length=1, kind=KIND_NONE):
        """Answer with status ``code`` and a payload of ``length`` bytes, of which the
        first is the status and the rest a body of ``kind``."""
        self.m.d.sync += [self.status.eq(code), self.resp_len.eq(length), self.extra.eq(kind)]
        self.m.next = "RESP_HDR"

    def drive_header(self, seq, cmd):
        """The response header's fields (combinational; valid in ``RESP_HDR``)."""
        h = self.engine.header.payload
        self.m.d.comb += [h.seq.eq(seq), h.cmd.eq(cmd), h.length.eq(self.resp_len)]

    @contextmanager
    def read_buffer(self, prefix):
        """``{prefix}_ADDR`` puts ``idx`` on the frame buffer's address, ``{prefix}_WAIT``
        (with a read latency of 2) waits for its output register; the body of the
        ``with`` runs in ``{prefix}_DATA``, where the byte is on ``buf.data``."""
        m, latency = self.m, self.engine.buf_read_latency
        with m.State(f"{prefix}_ADDR"):
            m.d.comb += self.engine.buf.addr.eq(self.idx)
            m.next = f"{prefix}_WAIT" if latency > 1 else f"{prefix}_DATA"
        if latency > 1:
            with m.State(f"{prefix}_WAIT"):  # the frame buffer's output register
                m.next = f"{prefix}_DATA"
        with m.State(f"{prefix}_DATA"):
            yield

    def offer_byte(self):
        """Offer ``shreg``'s low byte to the framer; returns the condition on which it
        is taken, for the caller's ``with m.If(...)``, inside which :meth:`next_byte`.

        The ``If`` is the caller's because Amaranth makes one decision cell of the ``If``s
        on one signal from one source line: a helper's own ``If`` used by two states
        would merge theirs, which the engines wrote on two lines.
        """
        payload = self.engine.payload
        self.m.d.comb += [payload.valid.eq(1), payload.payload.eq(self.shreg[:8])]
        return payload.ready

    @contextmanager
    def next_byte(self, last):
        """The offered byte is taken: shift the next one in; the body of the ``with``
        runs when the byte at lane ``last`` has gone."""
        m, shreg, lane = self.m, self.shreg, self.lane
        m.d.sync += [shreg.eq(shreg >> 8), lane.eq(lane + 1)]
        with m.If(lane == last):
            yield

    @contextmanager
    def crc_bytes(self, crc32, last):
        """Run ``shreg``'s low byte through ``crc32`` and shift the next one in; the body
        of the ``with`` runs on the byte at lane ``last``."""
        m, shreg, lane = self.m, self.shreg, self.lane
        m.d.comb += [crc32.data.eq(shreg[:8]), crc32.valid.eq(1)]
        m.d.sync += [shreg.eq(shreg >> 8), lane.eq(lane + 1)]
        with m.If(lane == last):
            yield

    def crc_end(self, crc32):
        """The CRC register has taken the last byte: answer OK with it."""
        self.m.d.sync += self.word32.eq(crc32.crc)
        self.respond(LinkStatus.OK, 5, KIND_WORD32)

    def header_state(self):
        with self.m.State("RESP_HDR"):
            self.m.d.comb += self.engine.header.valid.eq(1)
            with self.m.If(self.engine.header.ready):
                self.m.next = "RESP_STATUS"

    def status_state(self, bodies):
        """``RESP_STATUS`` sends the status byte, loads ``word32`` into ``shreg``, then
        goes on by ``extra``: ``bodies`` is a list of ``(kinds, state, statements)``, the
        kinds of body that start in ``state`` after the sync ``statements``; any other
        kind is done."""
        m, payload = self.m, self.engine.payload
        with m.State("RESP_STATUS"):
            m.d.comb += [payload.valid.eq(1), payload.payload.eq(self.status)]
            with m.If(payload.ready):
                m.d.sync += [self.lane.eq(0), self.shreg.eq(self.word32)]
                with m.Switch(self.extra):
                    for kinds, state, statements in bodies:
                        with m.Case(*kinds):
                            if statements:
                                m.d.sync += statements
                            m.next = state
                    with m.Default():
                        m.next = "DONE"

    @contextmanager
    def word32_state(self):
        """``RESP_WORD32`` sends ``shreg``'s four low bytes; the body of the ``with``
        runs after the last one."""
        with self.m.State("RESP_WORD32"), self.m.If(self.offer_byte()), self.next_byte(3):
            yield

    def done_state(self):
        """``DONE`` hands the frame back to the parser: its buffer is free again."""
        with self.m.State("DONE"):
            self.m.d.comb += self.engine.frame.ready.eq(1)
            self.m.next = "IDLE"
