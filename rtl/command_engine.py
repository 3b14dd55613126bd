"""The command engine: executes checked frames against the matvec engine and its
memories, and produces the response. Commands and layouts: ternary_core.protocol."""

from types import SimpleNamespace

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ternary_core import protocol as P
from ternary_core.protocol import Cmd, LinkStatus

from .framing import FrameBufferReadSignature, frame_layout, header_layout
from .matvec_engine import MatvecEngine
from .responder import FIRST_KIND, KIND_WORD32, Responder
from .results_memory import ResultsMemory
from .weight_store import WeightWriteSignature

# What follows a response's status byte, besides the responder's own kinds.
EXTRA_INFO, EXTRA_RESULTS, EXTRA_CYCLES_RESULTS = range(FIRST_KIND, FIRST_KIND + 3)

# The argument bytes of the version 1 and 2 requests, as the parser latches them
# (``docs/protocol.md``). MATVEC's base is MATVEC_READ's with a ``width`` of 0: the
# weight store has at most 2**24 words.
REQUEST_ARGS = data.UnionLayout({
    "write_weights": data.StructLayout({"word_addr": 32}),
    "check_weights": data.StructLayout({"word_addr": 32, "words": 32}),
    "load_activations": data.StructLayout({"word_offset": 16}),
    "matvec": data.StructLayout({"base": 24, "width": 8, "m": 16, "k": 16}),
    "read_results": data.StructLayout({"offset": 16, "count": 16, "width": 8}),
})


class CommandEngine(wiring.Component):
    """Runs one request at a time: INFO, WRITE_WEIGHTS, CHECK_WEIGHTS, LOAD_ACTIVATIONS,
    MATVEC, READ_RESULTS, RESET, MATVEC_READ (see ``docs/protocol.md``); answers each
    with exactly one response frame, or a NACK for a frame the parser flagged.

    MATVEC_READ is three of the others chained — LOAD_ACTIVATIONS (when it carries
    activation bytes), MATVEC, READ_RESULTS — through their own states, so it adds
    sequencing but hardly any datapath.

    It owns the :class:`MatvecEngine` and the results memory (``max_m`` accumulators).
    A frame is acknowledged on ``frame`` only after its response is out, so the parser
    keeps the payload untouched while it is being read.

    Ports
    -----
    frame : In(stream of frame_layout)
    buf : Out(FrameBufferReadSignature) — read latency ``buf_read_latency`` (1 or 2) cycles
    header : Out(stream of header_layout) — to the framer
    payload : Out(stream of bytes) — to the framer
    idle : Out(1) — no request pending or in progress
    vm_engine : the engine's ``cmd``, ``result``, ``acts`` and ``busy`` (only with
        ``share_engine``), for a vector machine that drives the engine while ``vm_owns``
    vm_owns : In(1) (only with ``share_engine``)
    vm_wgt : In(WeightWriteSignature) (only with ``word_writes``) — the vector machine's
        whole-word writes into the weight store, beside the engine's reads
    """

    SHARED_ENGINE_PORTS = ("cmd", "result", "acts", "busy")

    def __init__(self, config, max_payload, *, weight_store="generic", base3_impl="arith",
                 buf_read_latency=1, limits=None, share_engine=False, word_writes=False):
        if buf_read_latency not in (1, 2):
            raise ValueError(f"buf_read_latency must be 1 or 2, not {buf_read_latency!r}")
        self.config = config
        self.max_payload = max_payload
        self.buf_read_latency = buf_read_latency
        # with the vector machine's limits, INFO is the version 3 record that carries them
        self.info = P.info_for(config, max_payload, limits).pack()
        self.engine = MatvecEngine(config, weight_store=weight_store, base3_impl=base3_impl,
                                   word_writes=word_writes)
        self.share_engine = share_engine
        ports = {
            "frame": In(stream.Signature(frame_layout())),
            "buf": Out(FrameBufferReadSignature(max(1, (max_payload - 1).bit_length()))),
            "header": Out(stream.Signature(header_layout())),
            "payload": Out(stream.Signature(8)),
            "idle": Out(1),
        }
        if share_engine:
            own = self.engine.signature.members
            ports["vm_engine"] = Out(wiring.Signature({n: own[n] for n in self.SHARED_ENGINE_PORTS}))
            ports["vm_owns"] = In(1)
        if word_writes:
            ports["vm_wgt"] = In(WeightWriteSignature(self.engine.addr_bits, config.word_bytes))
        super().__init__(ports)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.results = results = ResultsMemory(cfg.rows, cfg.max_m, cfg.acc_bits,
                                                       registered=cfg.fetch_register)
        m.submodules.crc32 = crc32 = getattr(catalog, P.CHECK_CRC)(data_width=8).create()
        r = self._registers(m, eng, results, crc32)
        r.resp.drive_header(r.fr.seq, r.resp_cmd)

        with m.FSM() as fsm:
            m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~self.frame.valid)
            self._intake(m, r)
            self._checks(m, r)
            self._dispatch(m, r)
            self._store_bytes(m, r)
            self._check_weights(m, r)
            self._matvec(m, r)
            self._response(m, r)
        if self.share_engine:
            self._share_engine(m, eng)
        if "vm_wgt" in self.signature.members:
            wiring.connect(m, wiring.flipped(self.vm_wgt), eng.wgt)
        return m

    def _registers(self, m, eng, results, crc32):
        """The registers every state shares, the latched frame's arguments (``args``),
        and the :class:`Responder`; returned as one namespace with the submodules
        ``eng``, ``results`` (``res_wr``, ``res_rd``) and ``crc32``. The signals are
        named here, after these local names."""
        cfg = self.config
        W, A = cfg.weight_words, cfg.act_words
        fr = Signal(frame_layout())
        args = REQUEST_ARGS(fr.args)
        resp_cmd = Signal(8)
        last_idx = Signal(16)                   # index of the last payload byte
        known, len_ok, range_ok = Signal(), Signal(), Signal()
        nbytes_q = Signal(16 + cfg.result_bytes.bit_length())  # READ_RESULTS reply bytes
        res_end = Signal(17)                    # READ_RESULTS: offset + count
        words_end = Signal(W.bit_length() + 1)  # CHECK_WEIGHTS: address + words (W + 1: too many)
        mv_shape_ok = Signal()                  # MATVEC(_READ): M, K and the base in range
        accept, refusal = Signal(), Signal(8)   # the checks' verdict: run, or answer refusal
        res_width = Signal(range(cfg.result_bytes + 1))  # bytes sent per result
        idx = Signal(16)                  # payload byte index / results index
        last_res = Signal(16)                   # index of the last result to send
        # Only as wide as the memories need (checked addresses, and one word past the
        # end): every bit of these costs logic cells the iCEBreaker is short of.
        waddr = Signal(max(W, A).bit_length() + 1)
        lane = Signal(range(max(cfg.word_bytes, cfg.cols, self.engine.weight_read_latency) + 1))  # CW_WAIT counts in it
        nwords = Signal(W.bit_length())        # CHECK_WEIGHTS: at most W
        shreg = Signal(8 * max(cfg.word_bytes, cfg.result_bytes, 4))
        chained = Signal()      # MATVEC_READ: LOAD_ACTIVATIONS and MATVEC go on to the next step
        acts_follow = Signal()  # MATVEC_READ carries activation bytes
        info_rom = Array(Const(b, 8) for b in self.info)
        resp = Responder(m, self, idx=idx, lane=lane, shreg=shreg, kinds=FIRST_KIND + 3)
        return SimpleNamespace(
            eng=eng, results=results, res_wr=results.write, res_rd=results.read, crc32=crc32,
            fr=fr, args=args, resp_cmd=resp_cmd, last_idx=last_idx,
            known=known, len_ok=len_ok, range_ok=range_ok, nbytes_q=nbytes_q, res_end=res_end,
            words_end=words_end, mv_shape_ok=mv_shape_ok, accept=accept, refusal=refusal,
            res_width=res_width, idx=idx, last_res=last_res, waddr=waddr, lane=lane,
            nwords=nwords, shreg=shreg, chained=chained, acts_follow=acts_follow,
            info_rom=info_rom, resp=resp)

    def _intake(self, m, r):
        """IDLE latches a frame (and the response's command); SUMS registers the sums
        the checks compare, a cycle ahead of them: an adder and a comparator in one
        cycle were the iCEBreaker's longest path at 36 MHz."""
        cfg, fr, mv, cw, rr = self.config, r.fr, r.args.matvec, r.args.check_weights, r.args.read_results
        W = cfg.weight_words
        with m.State("IDLE"):
            with m.If(self.frame.valid):
                m.d.sync += [fr.eq(self.frame.payload), r.resp_cmd.eq(self.frame.payload.cmd | P.RESPONSE_BIT)]
                m.next = "SUMS"

        length, mm, kk = fr.length, mv.m, mv.k
        off, cnt, width = rr.offset, rr.count, rr.width
        with m.State("SUMS"):
            # cnt * width by shift-and-add over width's few bits: no multiplier
            nbytes = sum(Mux(width[i], cnt << i, 0) for i in range(cfg.result_bytes.bit_length()))
            wb = W.bit_length()
            m.d.sync += [r.last_idx.eq(length - 1), r.nbytes_q.eq(nbytes), r.res_end.eq(off + cnt),
                         r.words_end.eq(Mux(cw.words > W, W + 1, cw.word_addr[:wb] + cw.words[:wb])),
                         r.mv_shape_ok.eq((mm != 0) & (mm <= cfg.max_m) & (kk != 0) &
                                          (kk <= cfg.max_k) & (mv.base < W)),
                         r.last_res.eq(off + cnt - 1)]
            m.next = "CHECK"

    def _checks(self, m, r):
        """CHECK computes every check of the request, from registers into registers, so
        that no comparator sits in front of the state machine's next-state logic;
        VERDICT folds them into ``accept`` and ``refusal``, so that DISPATCH decides on
        one bit."""
        cfg, fr, args = self.config, r.fr, r.args
        W, A = cfg.weight_words, cfg.act_words
        known, len_ok, range_ok = r.known, r.len_ok, r.range_ok
        length, mm = fr.length, args.matvec.m
        cnt, width = args.read_results.count, args.read_results.width
        with m.State("CHECK"):
            m.d.sync += [known.eq(1), len_ok.eq(0), range_ok.eq(0)]
            with m.Switch(fr.cmd):
                with m.Case(Cmd.INFO, Cmd.RESET):
                    m.d.sync += [len_ok.eq(length == 0), range_ok.eq(1)]
                with m.Case(Cmd.WRITE_WEIGHTS):
                    m.d.sync += [len_ok.eq(length >= 5), range_ok.eq(args.write_weights.word_addr < W)]
                with m.Case(Cmd.LOAD_ACTIVATIONS):
                    m.d.sync += [len_ok.eq(length >= 3), range_ok.eq(args.load_activations.word_offset < A)]
                with m.Case(Cmd.CHECK_WEIGHTS):
                    m.d.sync += [len_ok.eq(length == 8),
                                 range_ok.eq((args.check_weights.word_addr < W) & (r.words_end <= W))]
                with m.Case(Cmd.MATVEC, Cmd.MATVEC_READ):
                    # MATVEC_READ's base is 24 bits, and its top byte the result width;
                    # weight_words <= 2**24, so MATVEC's base must have that byte zero.
                    is_read = fr.cmd == Cmd.MATVEC_READ
                    read_width = args.matvec.width
                    m.d.sync += [len_ok.eq(Mux(is_read, length >= 8, length == 8)),
                                 r.acts_follow.eq(length != 8),
                                 range_ok.eq(r.mv_shape_ok &
                                             Mux(is_read, (read_width != 0) & (read_width <= cfg.result_bytes),
                                                 read_width == 0))]
                    if cfg.max_m * cfg.result_bytes + 5 > 0xFFFF:  # only then can a reply overflow
                        nres = sum(Mux(read_width[i], mm << i, 0) for i in range(cfg.result_bytes.bit_length()))
                        with m.If(is_read & (nres > 0xFFFF - 5)):
                            m.d.sync += range_ok.eq(0)
                with m.Case(Cmd.READ_RESULTS):
                    m.d.sync += [len_ok.eq(length == P.ARG_BYTES[Cmd.READ_RESULTS]),
                                 range_ok.eq((cnt != 0) & (r.res_end <= cfg.max_m) & (width != 0) &
                                             (width <= cfg.result_bytes) & (r.nbytes_q <= self.max_payload - 1))]
                with m.Default():
                    m.d.sync += known.eq(0)
            m.next = "VERDICT"

        with m.State("VERDICT"):
            m.d.sync += [r.accept.eq((fr.error == 0) & known & len_ok & range_ok),
                         r.refusal.eq(Mux(fr.error != 0, fr.error,
                                          Mux(~known, LinkStatus.UNKNOWN_COMMAND,
                                              Mux(~len_ok, LinkStatus.BAD_LENGTH, LinkStatus.OUT_OF_RANGE))))]
            m.next = "DISPATCH"

    def _dispatch(self, m, r):
        """DISPATCH answers a refused request (a NACK for a frame the parser flagged),
        answers INFO, RESET and READ_RESULTS at once, and loads the registers the other
        commands' states start from (``waddr``, ``lane``, ``idx``, ``chained``, ...)."""
        fr, args, respond = r.fr, r.args, r.resp.respond
        waddr, lane, idx, chained, acts_follow = r.waddr, r.lane, r.idx, r.chained, r.acts_follow
        with m.State("DISPATCH"):
            with m.If(~r.accept):
                with m.If(fr.error != 0):
                    m.d.sync += r.resp_cmd.eq(P.NACK)
                respond(r.refusal)
            with m.Else():
                # The command is known here (CHECK matched all its bits), so its low
                # bits tell it apart: one LUT level less in front of every register
                # DISPATCH loads.
                with m.Switch(fr.cmd[:max(Cmd).bit_length()]):
                    with m.Case(Cmd.INFO):
                        respond(LinkStatus.OK, 1 + len(self.info), EXTRA_INFO)
                    with m.Case(Cmd.RESET):
                        respond(LinkStatus.OK)
                    with m.Case(Cmd.WRITE_WEIGHTS):
                        m.d.sync += [waddr.eq(args.write_weights.word_addr), lane.eq(0), idx.eq(4)]
                        m.next = "WW_ADDR"
                    with m.Case(Cmd.LOAD_ACTIVATIONS):
                        m.d.sync += [waddr.eq(args.load_activations.word_offset), lane.eq(0), idx.eq(2),
                                     chained.eq(0)]
                        m.next = "LA_ADDR"
                    with m.Case(Cmd.MATVEC_READ):
                        # activations from payload byte 8 into word 0 on, then the matvec
                        m.d.sync += [waddr.eq(0), lane.eq(0), idx.eq(Mux(acts_follow, 8, 0)),
                                     chained.eq(1), r.res_width.eq(args.matvec.width)]
                        with m.If(acts_follow):
                            m.next = "LA_ADDR"
                        with m.Else():
                            m.next = "MV_CMD"
                    with m.Case(Cmd.CHECK_WEIGHTS):
                        m.d.comb += r.crc32.start.eq(1)
                        cw = args.check_weights
                        m.d.sync += [waddr.eq(cw.word_addr), r.nwords.eq(cw.words)]
                        m.next = "CW_NEXT"
                    with m.Case(Cmd.MATVEC):
                        m.d.sync += [idx.eq(0), chained.eq(0)]
                        m.next = "MV_CMD"
                    with m.Case(Cmd.READ_RESULTS):
                        rr = args.read_results
                        m.d.sync += [idx.eq(rr.offset), r.res_width.eq(rr.width)]
                        respond(LinkStatus.OK, 1 + r.nbytes_q, EXTRA_RESULTS)

    def _store_bytes(self, m, r):
        """WRITE_WEIGHTS (``WW_*``) and LOAD_ACTIVATIONS (``LA_*``): payload byte ``idx``
        into lane ``lane`` of word ``waddr``, until ``last_idx``. One loop body for
        both: the Verilog's decision cells were built from it (see :mod:`.responder`).
        MATVEC_READ's activations (``chained``) go on to ``MV_CMD``."""
        cfg, eng, resp, respond = self.config, r.eng, r.resp, r.resp.respond
        waddr, lane, idx = r.waddr, r.lane, r.idx
        W, A = cfg.weight_words, cfg.act_words
        for prefix, limit, lanes in (("WW", W, cfg.word_bytes), ("LA", A, cfg.cols)):
            with resp.read_buffer(prefix):
                with m.If(waddr >= limit):
                    respond(LinkStatus.OUT_OF_RANGE)
                with m.Else():
                    if prefix == "WW":
                        m.d.comb += [eng.weights.addr.eq(waddr),
                                     eng.weights.wdata.eq(self.buf.data.replicate(lanes)),
                                     eng.weights.wmask.eq(1 << lane)]
                    else:
                        m.d.comb += [eng.acts.addr.eq(waddr), eng.acts.data.eq(self.buf.data.replicate(lanes)),
                                     eng.acts.en.eq(1 << lane)]
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0), waddr.eq(waddr + 1)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == r.last_idx):
                        if prefix == "LA":
                            with m.If(r.chained):  # MATVEC_READ: on to the matvec
                                m.d.sync += idx.eq(0)
                                m.next = "MV_CMD"
                            with m.Else():
                                respond(LinkStatus.OK)
                        else:
                            respond(LinkStatus.OK)
                    with m.Else():
                        m.next = f"{prefix}_ADDR"

    def _check_weights(self, m, r):
        """CHECK_WEIGHTS (``CW_*``): read each of ``nwords`` words from ``waddr`` on back
        from the weight store (``lane`` counts its read latency) and run its bytes, in
        ``shreg``, through CRC-32; answer with the CRC."""
        eng, resp, waddr, lane, nwords = r.eng, r.resp, r.waddr, r.lane, r.nwords
        with m.State("CW_NEXT"):
            with m.If(nwords == 0):
                m.next = "CW_END"
            with m.Else():
                m.d.comb += eng.weights.addr.eq(waddr)
                m.d.sync += lane.eq(0)
                m.next = "CW_WAIT"
        with m.State("CW_WAIT"):  # the engine's weight reads are pipelined
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane == eng.weight_read_latency - 2):
                m.next = "CW_LATCH"
        with m.State("CW_LATCH"):
            m.d.sync += [r.shreg.eq(eng.weights.rdata), lane.eq(0)]
            m.next = "CW_BYTES"
        with m.State("CW_BYTES"), resp.crc_bytes(r.crc32, self.config.word_bytes - 1):
            m.d.sync += [waddr.eq(waddr + 1), nwords.eq(nwords - 1)]
            m.next = "CW_NEXT"
        with m.State("CW_END"):
            resp.crc_end(r.crc32)

    def _matvec(self, m, r):
        """MATVEC and MATVEC_READ (``MV_*``): start the engine, store every result in the
        results memory (``idx`` is the row), answer with the cycle count — for
        MATVEC_READ (``chained``) followed by the results, ``res_width`` bytes each."""
        eng, res_wr, mv, idx = r.eng, r.res_wr, r.args.matvec, r.idx
        with m.State("MV_CMD"):
            m.d.comb += [eng.cmd.valid.eq(1), eng.cmd.payload.base.eq(mv.base),
                         eng.cmd.payload.m.eq(mv.m), eng.cmd.payload.k.eq(mv.k)]
            with m.If(eng.cmd.ready):
                m.next = "MV_RUN"
        with m.State("MV_RUN"):
            # A row tile per beat, written whole (several results a cycle).
            m.d.comb += [eng.result.ready.eq(1), res_wr.row.eq(idx), res_wr.en.eq(eng.result.valid),
                         res_wr.data.eq(eng.result.payload.values),
                         res_wr.count.eq(eng.result.payload.count)]
            with m.If(eng.result.valid):
                m.d.sync += idx.eq(idx + eng.result.payload.count)
                with m.If(eng.result.payload.last):
                    m.next = "MV_END"
        with m.State("MV_END"):
            m.d.sync += r.resp.word32.eq(eng.cycles)
            with m.If(r.chained):  # MATVEC_READ: the results follow the cycle count
                # m results of res_width bytes, by shift-and-add over res_width's bits
                res_width = r.res_width
                nres = sum(Mux(res_width[i], mv.m << i, 0) for i in range(len(res_width)))
                m.d.sync += r.last_res.eq(mv.m - 1)
                r.resp.respond(LinkStatus.OK, 5 + nres, EXTRA_CYCLES_RESULTS)
            with m.Else():
                r.resp.respond(LinkStatus.OK, 5, KIND_WORD32)

    def _response(self, m, r):
        """The response: header, status byte, then the body by ``extra`` — the 32-bit
        word (cycles or CRC), INFO's record from ``info_rom``, the results from the
        results memory (``idx`` to ``last_res``, ``res_width`` bytes each) — and DONE."""
        resp, results, res_rd, idx, lane, shreg = r.resp, r.results, r.res_rd, r.idx, r.lane, r.shreg
        resp.header_state()
        resp.status_state([((KIND_WORD32, EXTRA_CYCLES_RESULTS), "RESP_WORD32", []),
                           ((EXTRA_INFO,), "RESP_INFO", [idx.eq(0)]),
                           ((EXTRA_RESULTS,), "RESP_RES_ADDR", [])])
        with resp.word32_state():
            with m.If(resp.extra == EXTRA_CYCLES_RESULTS):
                m.d.sync += idx.eq(0)
                m.next = "RESP_RES_ADDR"
            with m.Else():
                m.next = "DONE"
        with m.State("RESP_INFO"):
            # indexed by idx's low bits only: a 16-bit index made the ROM's mux deeper
            info_idx = idx[:max(1, (len(self.info) - 1).bit_length())]
            m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(r.info_rom[info_idx])]
            with m.If(self.payload.ready):
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == len(self.info) - 1):
                    m.next = "DONE"
        with m.State("RESP_RES_ADDR"):
            m.d.comb += res_rd.addr.eq(idx)
            m.next = "RESP_RES_WAIT1" if results.read_latency > 1 else "RESP_RES_LATCH"
        for i in range(1, results.read_latency):  # the results memory's read pipeline
            with m.State(f"RESP_RES_WAIT{i}"):
                m.next = f"RESP_RES_WAIT{i + 1}" if i + 1 < results.read_latency else "RESP_RES_LATCH"
        with m.State("RESP_RES_LATCH"):
            # sign-extends into the bytes that can be sent only (result_bytes <= 4): the
            # sign bit of a 512-bit shift register had too much fan-out for the ULX3S
            m.d.sync += [shreg[:32].eq(res_rd.data.as_signed()), lane.eq(0)]
            m.next = "RESP_RES_BYTES"
        with m.State("RESP_RES_BYTES"), m.If(resp.offer_byte()), resp.next_byte(r.res_width - 1):
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx == r.last_res):
                m.next = "DONE"
            with m.Else():
                m.next = "RESP_RES_ADDR"
        resp.done_state()

    def _share_engine(self, m, eng):
        """The vector machine drives the engine while ``vm_owns`` (this engine is idle
        then: one request at a time). These assignments come last, so they override
        the state machine's."""
        v = self.vm_engine
        with m.If(self.vm_owns):
            m.d.comb += [eng.cmd.valid.eq(v.cmd.valid), eng.cmd.payload.eq(v.cmd.payload),
                         eng.result.ready.eq(v.result.ready), eng.acts.addr.eq(v.acts.addr),
                         eng.acts.data.eq(v.acts.data), eng.acts.en.eq(v.acts.en)]
        m.d.comb += [v.cmd.ready.eq(eng.cmd.ready & self.vm_owns),
                     v.result.valid.eq(eng.result.valid & self.vm_owns),
                     v.result.payload.eq(eng.result.payload), v.busy.eq(eng.busy)]
