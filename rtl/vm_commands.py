"""The vector machine's commands (protocol version 3): WRITE_MEM, CHECK_MEM, READ_MEM and
RUN, executed against the machine's ``load`` / ``peek`` / ``run`` / ``done`` ports.

It sits beside :class:`~rtl.command_engine.CommandEngine` (which keeps every version 1
and 2 command, INFO and the NACKs): the device core routes each checked frame by its
command (:func:`is_vm_command`) and merges the two engines' responses.
"""

from contextlib import contextmanager
from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ternary_core import protocol as P
from ternary_core.protocol import Cmd, LinkStatus

from .framing import FrameBufferReadSignature, frame_layout, header_layout
from .responder import FIRST_KIND, KIND_WORD32, Responder
from .vm.layouts import LOAD_DATA_BITS, load_layout, peek_layout, result_layout, run_layout, run_request_layout
from .vm.spaces import VmSpaces


# WRITE_MEM / CHECK_MEM / READ_MEM arguments (protocol.encode_mem): CHECK_MEM's word
# count is u32, READ_MEM's u16 (the low half)
MEM_ARGS = data.StructLayout({"space": 8, "word_addr": P.MEM_ADDR_BITS, "words": 32})
# RUN's OK reply is sent as two words by RESP_WORD32, in this order
if P.RUN_REPLY.fields != ("cycles", "state"):
    raise AssertionError(f"RUN_REPLY is {P.RUN_REPLY.fields}: RESP_WORD32 sends cycles, then state")
# the kinds of response body after the status byte (the Responder's own come first)
EXTRA_MEM, EXTRA_RUN, EXTRA_CODE = range(FIRST_KIND, FIRST_KIND + 3)


def is_vm_command(cmd):
    """Whether a frame's ``cmd`` (a Value) is one of the vector machine's commands."""
    c = Const(Cmd.WRITE_MEM, 8)
    return (cmd >= c) & (cmd <= Cmd.RUN)


class VmCommandEngine(wiring.Component):
    """Runs one version 3 request at a time and answers it with one response frame.

    * WRITE_MEM: each word's link bytes (little-endian) become one ``load`` beat; a
      space the host may not write (the machine's CYCLES, the engine's ACT) is
      OUT_OF_RANGE.
      A payload that ends inside a word is BAD_LENGTH (the whole words before it are
      written: the command is idempotent, so the host just resends it whole).
    * CHECK_MEM: ``peek`` every word and run its link bytes through CRC-32.
    * READ_MEM: ``peek`` every word and send its link bytes.
    * RUN: the fed ids go to the tokens space (``load``), then one ``run`` beat; on
      ``done``, the cycle count, the sampler state and the ``n_new`` generated ids
      (``peek`` of the tokens space) — or
      MODEL_ERROR with the machine's ``status``, ``err_pc`` and ``err_pos``
      (:data:`~ternary_core.protocol.RUN_ERROR`).

    Ports
    -----
    frame : In(stream of frame_layout) — only frames for which :func:`is_vm_command`
    buf : Out(FrameBufferReadSignature) — read latency ``buf_read_latency`` (1 or 2) cycles
    header, payload : Out(stream) — to the framer
    idle : Out(1)
    load : Out(stream of load_layout)
    peek_req : Out(stream of peek_layout)
    peek : In(stream of 64 bits)
    run : Out(stream of :func:`~rtl.vm.layouts.run_layout`)
    done : In(stream of :func:`~rtl.vm.layouts.result_layout`) — ``status`` 0 is OK
    """

    def __init__(self, spaces, max_payload, *, buf_read_latency=1):
        if not isinstance(spaces, VmSpaces):
            raise TypeError(f"spaces must be a VmSpaces, not {spaces!r}")
        if buf_read_latency not in (1, 2):
            raise ValueError(f"buf_read_latency must be 1 or 2, not {buf_read_latency!r}")
        self.spaces, self.max_payload = spaces, max_payload
        self.buf_read_latency = buf_read_latency
        sb = spaces.space_bits
        super().__init__({
            "frame": In(stream.Signature(frame_layout())),
            "buf": Out(FrameBufferReadSignature(max(1, (max_payload - 1).bit_length()))),
            "header": Out(stream.Signature(header_layout())),
            "payload": Out(stream.Signature(8)),
            "idle": Out(1),
            "load": Out(stream.Signature(load_layout(sb))),
            "peek_req": Out(stream.Signature(peek_layout(sb))),
            "peek": In(stream.Signature(LOAD_DATA_BITS)),
            "run": Out(stream.Signature(run_layout())),
            "done": In(stream.Signature(result_layout())),
        })

    def elaborate(self, platform):
        """The shared registers, then the state machine group by group. Each state is
        numbered where it is first named: the groups' order is the encoding's."""
        m = Module()
        r = self._registers(m)
        with m.FSM() as fsm:
            m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~self.frame.valid)
            self._check_states(m, r)
            self._dispatch_state(m, r)
            self._write_mem_states(m, r)
            self._check_mem_states(m, r)
            self._run_feed_states(m, r)
            self._run_states(m, r)
            self._response_states(m, r)
            self._peek_reply_states(m, r)
            r.resp.done_state()
        return m

    def _registers(self, m):
        """The CRC-32 unit, the space ROMs and every register the state groups share
        (:class:`_Shared`); drives the response header and the ``load`` / ``peek_req``
        addresses, which all states share.

        The signals are created in the order, and under the names, the engine always
        gave them: the Verilog of the shipped builds depends on both.
        """
        sp = self.spaces
        m.submodules.crc32 = crc32 = getattr(catalog, P.CHECK_CRC)(data_width=8).create()
        n_ids = 1 << sp.space_bits
        none = (0, 0, False)
        bpw_rom = Array(Const(sp.spaces.get(i, none)[0], 4) for i in range(n_ids))
        depth_rom = Array(Const(sp.spaces.get(i, none)[1], P.MEM_ADDR_BITS + 1) for i in range(n_ids))
        wr_rom = Array(Const(int(sp.spaces.get(i, none)[2]), 1) for i in range(n_ids))

        fr = Signal(frame_layout())
        mem = data.View(MEM_ARGS, fr.args)
        space = mem.space[:sp.space_bits]
        space_ok = mem.space[sp.space_bits:] == 0
        bpw = Signal(4)                         # link bytes per word of the frame's space
        depth = Signal(P.MEM_ADDR_BITS + 1)
        writable = Signal()
        known, len_ok, range_ok = Signal(), Signal(), Signal()
        last_idx = Signal(16)
        idx = Signal(16)
        lane = Signal(4)
        addr = Signal(P.MEM_ADDR_BITS + 1)
        nwords = Signal(32)
        shreg = Signal(LOAD_DATA_BITS)
        resp = Responder(m, self, idx=idx, lane=lane, shreg=shreg, kinds=FIRST_KIND + 3)
        run_tail = Signal(8 * (P.RUN_REQUEST.size - P.ARGS_MAX))   # RUN argument bytes the parser did not latch
        req = data.View(run_request_layout(), Cat(fr.args, run_tail))   # the RUN request by field name
        params = Signal(run_layout())
        res = Signal(result_layout())

        resp.drive_header(fr.seq, fr.cmd | P.RESPONSE_BIT)
        m.d.comb += [self.load.payload.space.eq(space), self.load.payload.addr.eq(addr),
                     self.peek_req.payload.space.eq(space), self.peek_req.payload.addr.eq(addr)]
        return _Shared(
            crc32=crc32, bpw_rom=bpw_rom, depth_rom=depth_rom, wr_rom=wr_rom,
            fr=fr, mem=mem, space=space, space_ok=space_ok, bpw=bpw, depth=depth, writable=writable,
            known=known, len_ok=len_ok, range_ok=range_ok, last_idx=last_idx, idx=idx, lane=lane,
            addr=addr, nwords=nwords, shreg=shreg, resp=resp, run_tail=run_tail, req=req,
            params=params, res=res)

    def _check_states(self, m, r):
        """``IDLE`` latches a frame, ``LOOKUP`` its space's facts (``bpw``, ``depth``,
        ``writable``), ``CHECK`` sets ``known``, ``len_ok`` and ``range_ok`` for
        :meth:`_dispatch_state`."""
        sp, fr, mem = self.spaces, r.fr, r.mem
        with m.State("IDLE"):
            with m.If(self.frame.valid):
                m.d.sync += fr.eq(self.frame.payload)
                m.next = "LOOKUP"

        with m.State("LOOKUP"):  # the space's facts into registers, then the checks
            # one line: Amaranth shares the decoding of ``space`` between the three ROMs
            # only for lookups written on the same source line
            bpw_rom, depth_rom, wr_rom, space = r.bpw_rom, r.depth_rom, r.wr_rom, r.space
            m.d.sync += [r.bpw.eq(bpw_rom[space]), r.depth.eq(depth_rom[space]), r.writable.eq(wr_rom[space])]
            m.next = "CHECK"

        with m.State("CHECK"):
            length, depth, len_ok, range_ok = fr.length, r.depth, r.len_ok, r.range_ok
            known_space = r.space_ok & (r.bpw != 0)
            m.d.sync += [r.last_idx.eq(length - 1), r.known.eq(1), len_ok.eq(0), range_ok.eq(0)]
            with m.Switch(fr.cmd):
                with m.Case(Cmd.WRITE_MEM):
                    m.d.sync += [len_ok.eq(length > P.ARG_BYTES[Cmd.WRITE_MEM]),
                                 range_ok.eq(known_space & r.writable & (mem.word_addr < depth))]
                with m.Case(Cmd.CHECK_MEM):
                    m.d.sync += [len_ok.eq(length == P.ARG_BYTES[Cmd.CHECK_MEM]),
                                 range_ok.eq(known_space & (mem.word_addr < depth) &
                                             (mem.words <= depth - mem.word_addr))]
                with m.Case(Cmd.READ_MEM):
                    cnt = mem.words[:16]
                    m.d.sync += [len_ok.eq(length == P.ARG_BYTES[Cmd.READ_MEM]),
                                 range_ok.eq(known_space & (cnt != 0) & (mem.word_addr < depth) &
                                             (cnt <= depth - mem.word_addr) &
                                             (_times(r.bpw, cnt) <= P.MAX_RESPONSE - 1))]
                with m.Case(Cmd.RUN):
                    pos0, n_feed, n_new = r.req.pos0, r.req.n_feed, r.req.n_new
                    m.d.sync += [len_ok.eq(length == P.RUN_REQUEST.size + (n_feed << 1)),
                                 range_ok.eq((n_feed != 0) & (n_new != 0) &
                                             (pos0 + n_feed + n_new <= sp.run_end) &
                                             (P.RUN_REPLY.size + 1 + (n_new << 1) <= P.MAX_RESPONSE))]
                with m.Default():
                    m.d.sync += r.known.eq(0)
            m.next = "DISPATCH"

    def _dispatch_state(self, m, r):
        """``DISPATCH`` answers a failed check with its NACK, or starts the command:
        sets ``addr`` and the counters its states use, and goes to its first state."""
        mem, respond = r.mem, r.resp.respond
        with m.State("DISPATCH"):
            with m.If(~r.known):
                respond(LinkStatus.UNKNOWN_COMMAND)
            with m.Elif(~r.len_ok):
                respond(LinkStatus.BAD_LENGTH)
            with m.Elif(~r.range_ok):
                respond(LinkStatus.OUT_OF_RANGE)
            with m.Else():
                with m.Switch(r.fr.cmd):
                    with m.Case(Cmd.WRITE_MEM):
                        m.d.sync += [r.addr.eq(mem.word_addr), r.lane.eq(0),
                                     r.idx.eq(P.ARG_BYTES[Cmd.WRITE_MEM])]
                        m.next = "WM_ADDR"
                    with m.Case(Cmd.CHECK_MEM):
                        m.d.comb += r.crc32.start.eq(1)
                        m.d.sync += [r.addr.eq(mem.word_addr), r.nwords.eq(mem.words)]
                        m.next = "CM_NEXT"
                    with m.Case(Cmd.READ_MEM):
                        m.d.sync += [r.addr.eq(mem.word_addr), r.nwords.eq(mem.words[:16])]
                        respond(LinkStatus.OK, 1 + _times(r.bpw, mem.words[:16]), EXTRA_MEM)
                    with m.Case(Cmd.RUN):
                        m.d.sync += [r.idx.eq(P.ARGS_MAX), r.lane.eq(0)]
                        m.next = "RUN_TAIL_ADDR"

    def _write_mem_states(self, m, r):
        """WRITE_MEM: payload byte ``idx`` goes to byte ``lane`` of ``shreg``; each whole
        word is one ``load`` beat at ``addr``."""
        idx, lane, shreg, respond = r.idx, r.lane, r.shreg, r.resp.respond
        with r.resp.read_buffer("WM"):
            with m.Switch(lane):
                for i in range(LOAD_DATA_BITS // 8):
                    with m.Case(i):
                        if i == 0:
                            m.d.sync += shreg.eq(self.buf.data)
                        else:
                            m.d.sync += shreg[8 * i:8 * i + 8].eq(self.buf.data)
            m.d.sync += idx.eq(idx + 1)
            with m.If(lane == r.bpw - 1):
                m.d.sync += lane.eq(0)
                m.next = "WM_LOAD"
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
                with m.If(idx == r.last_idx):
                    respond(LinkStatus.BAD_LENGTH)     # the payload ends inside a word
                with m.Else():
                    m.next = "WM_ADDR"
        with m.State("WM_LOAD"):
            with m.If(r.addr >= r.depth):
                respond(LinkStatus.OUT_OF_RANGE)
            with m.Else():
                m.d.comb += [self.load.valid.eq(1), self.load.payload.data.eq(shreg)]
                with m.If(self.load.ready):
                    m.d.sync += r.addr.eq(r.addr + 1)
                    with m.If(idx == r.last_idx + 1):
                        respond(LinkStatus.OK)
                    with m.Else():
                        m.next = "WM_ADDR"

    def _check_mem_states(self, m, r):
        """CHECK_MEM: ``peek`` each of the ``nwords`` words from ``addr`` on and run its
        link bytes through CRC-32; answer with the CRC."""
        resp, crc32 = r.resp, r.crc32
        with m.State("CM_NEXT"), self._request_peek(m, r, "CM_END") as taken, m.If(taken):
            m.next = "CM_WAIT"
        with m.State("CM_WAIT"), m.If(self._accept_peek(m)), self._load_peeked(m, r):
            m.next = "CM_BYTES"
        with m.State("CM_BYTES"), resp.crc_bytes(crc32, r.bpw - 1):
            m.d.sync += [r.addr.eq(r.addr + 1), r.nwords.eq(r.nwords - 1)]
            m.next = "CM_NEXT"
        with m.State("CM_END"):
            resp.crc_end(crc32)

    def _run_feed_states(self, m, r):
        """RUN: the argument bytes past what the parser latched (into ``run_tail``),
        then the fed ids, each one ``load`` beat into the tokens space from ``pos0`` on."""
        idx, lane, shreg, req = r.idx, r.lane, r.shreg, r.req
        with r.resp.read_buffer("RUN_TAIL"):
            byte_in = self.buf.data << (len(r.run_tail) - 8)
            m.d.sync += [r.run_tail.eq((r.run_tail >> 8) | byte_in), idx.eq(idx + 1)]
            with m.If(idx == P.RUN_REQUEST.size - 1):
                m.d.sync += [r.addr.eq(req.pos0), lane.eq(0)]
                m.next = "RUN_ID_ADDR"
            with m.Else():
                m.next = "RUN_TAIL_ADDR"
        with r.resp.read_buffer("RUN_ID"):
            m.d.sync += [shreg.eq(Mux(lane[0], (self.buf.data << 8) | shreg[:8], self.buf.data)),
                         idx.eq(idx + 1), lane.eq(~lane[0])]
            with m.If(lane[0]):
                m.next = "RUN_ID_LOAD"
            with m.Else():
                m.next = "RUN_ID_ADDR"
        with m.State("RUN_ID_LOAD"):
            m.d.comb += [self.load.valid.eq(1), self.load.payload.space.eq(self.spaces.tokens_space),
                         self.load.payload.data.eq(shreg[:16])]
            with m.If(self.load.ready):
                m.d.sync += r.addr.eq(r.addr + 1)
                with m.If(idx == r.last_idx + 1):
                    m.next = "RUN_GO"
                with m.Else():
                    m.next = "RUN_ID_ADDR"

    def _run_states(self, m, r):
        """RUN: one ``run`` beat with the request's fields, then wait for ``done``: the
        result into ``res`` and the answer — OK with the cycles, the state and the new ids
        (``addr`` and ``nwords`` set for :meth:`_peek_reply_states`), or MODEL_ERROR."""
        req, res, respond = r.req, r.res, r.resp.respond
        with m.State("RUN_GO"):
            # the fields read from the buffer first, then the latched ones: the order the
            # shipped builds' Verilog was made with
            fields = sorted(P.RUN_REQUEST.fields, key=lambda name: P.RUN_REQUEST.offsets[name] < P.ARGS_MAX)
            m.d.comb += [getattr(r.params, name).eq(getattr(req, name)) for name in fields]
            m.d.comb += [self.run.valid.eq(1), self.run.payload.eq(r.params)]
            with m.If(self.run.ready):
                m.next = "RUN_WAIT"
        with m.State("RUN_WAIT"):
            m.d.comb += self.done.ready.eq(1)
            with m.If(self.done.valid):
                m.d.sync += [res.eq(self.done.payload), r.resp.word32.eq(self.done.payload.cycles),
                             r.addr.eq(req.pos0 + req.n_feed), r.nwords.eq(req.n_new)]
                with m.If(self.done.payload.status != 0):
                    respond(LinkStatus.MODEL_ERROR, 1 + P.RUN_ERROR.size, EXTRA_CODE)
                with m.Else():
                    respond(LinkStatus.OK, 1 + P.RUN_REPLY.size + (req.n_new << 1), EXTRA_RUN)

    def _response_states(self, m, r):
        """The response: header, status byte, then by ``extra``: the 32-bit word (CRC,
        or RUN's cycles and sampler state, then its ids), RUN_ERROR's fields, or
        READ_MEM's words (:meth:`_peek_reply_states`)."""
        resp, idx, lane, shreg = r.resp, r.idx, r.lane, r.shreg
        resp.header_state()
        resp.status_state([((KIND_WORD32,), "RESP_WORD32", []),
                           ((EXTRA_RUN,), "RESP_WORD32", [idx.eq(0)]),   # idx 0: cycles, 1: state
                           ((EXTRA_CODE,), "RESP_CODE", []),
                           ((EXTRA_MEM,), "RESP_PEEK", [])])
        with m.State("RESP_CODE"):   # status u8, err_pc u16, err_pos u16
            code = Cat(getattr(r.res, name) for name in P.RUN_ERROR.fields)
            m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(code.word_select(lane, 8))]
            with m.If(self.payload.ready):
                m.d.sync += lane.eq(lane + 1)
                with m.If(lane == P.RUN_ERROR.size - 1):
                    m.next = "DONE"
        with resp.word32_state():
            with m.If(resp.extra != EXTRA_RUN):
                m.next = "DONE"
            with m.Elif(idx == 0):     # then the sampler state
                m.d.sync += [idx.eq(1), shreg.eq(r.res.state), lane.eq(0)]
            with m.Else():             # then the ids, two bytes each
                m.d.sync += r.bpw.eq(P.ID_BYTES)
                m.next = "RESP_PEEK"

    def _peek_reply_states(self, m, r):
        """READ_MEM's words and RUN's ids: ``peek`` each of the ``nwords`` words from
        ``addr`` on (RUN's from the tokens space) and send its ``bpw`` link bytes."""
        resp = r.resp
        with m.State("RESP_PEEK"), self._request_peek(m, r, "DONE") as taken:
            with m.If(resp.extra == EXTRA_RUN):
                m.d.comb += self.peek_req.payload.space.eq(self.spaces.tokens_space)
            with m.If(taken):
                m.next = "RESP_PEEK_WAIT"
        with m.State("RESP_PEEK_WAIT"), m.If(self._accept_peek(m)), self._load_peeked(m, r):
            m.next = "RESP_PEEK_BYTES"
        with m.State("RESP_PEEK_BYTES"), m.If(resp.offer_byte()), resp.next_byte(r.bpw - 1):
            m.d.sync += [r.addr.eq(r.addr + 1), r.nwords.eq(r.nwords - 1)]
            m.next = "RESP_PEEK"

    # The peek of a word, shared by CHECK_MEM and the peek reply. As in
    # Responder.offer_byte, the ``If``s on ``peek_req.ready`` and ``peek.valid`` are the
    # caller's: Amaranth makes one decision cell of the ``If``s on one signal from one
    # source line, which would merge the two states' (and change the Verilog).

    @contextmanager
    def _request_peek(self, m, r, end):
        """Go to ``end`` if ``nwords`` is 0, else ask ``peek_req`` for the word at
        ``addr``: the body of the ``with`` runs while asking, and gets the condition on
        which the request is taken, for its own ``with m.If(...)``."""
        with m.If(r.nwords == 0):
            m.next = end
        with m.Else():
            m.d.comb += self.peek_req.valid.eq(1)
            yield self.peek_req.ready

    def _accept_peek(self, m):
        """Accept the peeked word; returns the condition on which it is there, for the
        caller's ``with m.If(...)``, inside which :meth:`_load_peeked`."""
        m.d.comb += self.peek.ready.eq(1)
        return self.peek.valid

    @contextmanager
    def _load_peeked(self, m, r):
        """The peeked word into ``shreg``, its first byte at lane 0; then the body of
        the ``with``."""
        m.d.sync += [r.shreg.eq(self.peek.payload), r.lane.eq(0)]
        yield


class _Shared(SimpleNamespace):
    """What the state groups of one :meth:`VmCommandEngine.elaborate` share, made by
    :meth:`VmCommandEngine._registers`: the CRC-32 unit ``crc32``; the space ROMs
    ``bpw_rom``, ``depth_rom``, ``wr_rom``; the latched frame ``fr``, its arguments
    ``mem`` and ``space`` (``space_ok``: its high bits are 0); the space's facts ``bpw``,
    ``depth``, ``writable``; the checks ``known``, ``len_ok``, ``range_ok``; the counters
    ``last_idx``, ``idx``, ``lane``, ``addr``, ``nwords`` and the shift register ``shreg``;
    the :class:`~rtl.responder.Responder` ``resp``; RUN's ``run_tail``, request ``req``,
    ``params`` and result ``res``."""


def _times(bpw, n):
    """``n * bpw`` by shift-and-add over ``bpw``'s bits: no multiplier."""
    return sum(Mux(bpw[i], n << i, 0) for i in range(len(bpw)))
