"""The command engine: executes checked frames against the matvec engine and its
memories, and produces the response. Commands and layouts: ternary_core.protocol."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ternary_core import protocol as P
from ternary_core.protocol import Cmd, Status

from .framing import FrameBufferReadSignature, frame_layout, header_layout
from .matvec_engine import MatvecEngine


class CommandEngine(wiring.Component):
    """Runs one request at a time: INFO, WRITE_WEIGHTS, CHECK_WEIGHTS, LOAD_ACTIVATIONS,
    MATVEC, READ_RESULTS, RESET, MATVEC_GROUP (see ``docs/protocol.md``); answers each
    with exactly one response frame, or a NACK for a frame the parser flagged.

    MATVEC_GROUP is the other commands chained: the LOAD_ACTIVATIONS path stores its
    activation bytes, then each layer entry is shifted into the MATVEC argument
    registers and run by the MATVEC path (its results land one after another in the
    results memory), and the READ_RESULTS sender returns them all after the summed
    cycle count. So it adds sequencing, not datapath.

    It owns the :class:`MatvecEngine` and the results memory (``max_m`` accumulators).
    A frame is acknowledged on ``frame`` only after its response is out, so the parser
    keeps the payload untouched while it is being read.

    Ports
    -----
    frame : In(stream of frame_layout)
    buf : Out(FrameBufferReadSignature)
    header : Out(stream of header_layout) — to the framer
    payload : Out(stream of bytes) — to the framer
    idle : Out(1) — no request pending or in progress
    """

    def __init__(self, config, max_payload, *, weight_store="generic", base3_impl="arith"):
        self.config = config
        self.max_payload = max_payload
        self.info = P.info_for(config, max_payload).pack()
        self.engine = MatvecEngine(config, weight_store=weight_store, base3_impl=base3_impl)
        super().__init__({
            "frame": In(stream.Signature(frame_layout())),
            "buf": Out(FrameBufferReadSignature(max(1, (max_payload - 1).bit_length()))),
            "header": Out(stream.Signature(header_layout())),
            "payload": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.results = results = memory.Memory(shape=signed(cfg.acc_bits), depth=cfg.max_m, init=[])
        res_wr = results.write_port()
        res_rd = results.read_port(transparent_for=())
        m.submodules.crc32 = crc32 = getattr(catalog, P.CHECK_CRC)(data_width=8).create()

        fr = Signal(frame_layout())
        a32_0, a32_1 = fr.args[:32], fr.args[32:64]
        a16 = [fr.args[16 * i: 16 * i + 16] for i in range(4)]
        status = Signal(8)
        resp_cmd = Signal(8)
        resp_len = Signal(16)
        extra = Signal(range(5))  # what follows the status byte
        EXTRA_NONE, EXTRA_WORD32, EXTRA_INFO, EXTRA_RESULTS, EXTRA_GROUP = range(5)
        word32 = Signal(32)
        last_idx = Signal(16)                   # index of the last payload byte
        known, len_ok, range_ok = Signal(), Signal(), Signal()
        nbytes_q = Signal(16)                   # READ_RESULTS reply bytes after the status
        res_width = Signal(range(cfg.result_bytes + 1))  # bytes sent per result
        idx = Signal(16)                  # payload byte index / results index
        last_res = Signal(16)                   # index of the last result to send
        waddr = Signal(32)
        lane = Signal(range(max(cfg.word_bytes, cfg.cols, P.GROUP_LAYER.size) + 1))
        nwords = Signal(32)
        shreg = Signal(8 * max(cfg.word_bytes, cfg.result_bytes, 4))
        W, A = cfg.weight_words, cfg.act_words
        # MATVEC_GROUP: set while the LOAD_ACTIVATIONS and MATVEC paths run for a group.
        grouped = Signal()
        layers_left = Signal(8)
        acts_follow = Signal()  # the group request carries activation bytes
        gptr = Signal(len(self.buf.addr))  # payload byte of the next layer entry
        mv_ok = Signal()  # the MATVEC arguments in fr.args are in range
        # READ_RESULTS' reply bytes, count * width by shift-and-add over width's few bits
        # (no multiplier); MATVEC_GROUP puts its result count and width in the same places.
        nbytes = Signal(16 + cfg.result_bytes.bit_length())
        m.d.comb += nbytes.eq(sum(Mux(fr.args[32 + i], a16[1] << i, 0)
                                  for i in range(cfg.result_bytes.bit_length())))
        m.d.comb += mv_ok.eq((a16[2] != 0) & (a16[2] <= cfg.max_m) & (a16[3] != 0) &
                             (a16[3] <= cfg.max_k) & (a32_0 < W))
        info_rom = Array(Const(b, 8) for b in self.info)

        def respond(code, length=1, kind=EXTRA_NONE):
            m.d.sync += [status.eq(code), resp_len.eq(length), extra.eq(kind)]
            m.next = "RESP_HDR"

        m.d.comb += [self.header.payload.seq.eq(fr.seq), self.header.payload.cmd.eq(resp_cmd),
                     self.header.payload.length.eq(resp_len)]

        with m.FSM() as fsm:
            m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~self.frame.valid)
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    m.d.sync += [fr.eq(self.frame.payload), resp_cmd.eq(self.frame.payload.cmd | P.RESPONSE_BIT)]
                    m.next = "CHECK"

            # Every check of the request is computed here, from registers into registers,
            # so that no comparator sits in front of the state machine's next-state logic.
            with m.State("CHECK"):
                length = fr.length
                off, cnt, width = a16[0], a16[1], fr.args[32:40]
                m.d.sync += [last_idx.eq(length - 1), known.eq(1), nbytes_q.eq(nbytes),
                             last_res.eq(off + cnt - 1), len_ok.eq(0), range_ok.eq(0)]
                with m.Switch(fr.cmd):
                    with m.Case(Cmd.INFO, Cmd.RESET):
                        m.d.sync += [len_ok.eq(length == 0), range_ok.eq(1)]
                    with m.Case(Cmd.WRITE_WEIGHTS):
                        m.d.sync += [len_ok.eq(length >= 5), range_ok.eq(a32_0 < W)]
                    with m.Case(Cmd.LOAD_ACTIVATIONS):
                        m.d.sync += [len_ok.eq(length >= 3), range_ok.eq(a16[0] < A)]
                    with m.Case(Cmd.CHECK_WEIGHTS):
                        m.d.sync += [len_ok.eq(length == 8), range_ok.eq((a32_0 < W) & (a32_1 <= W - a32_0))]
                    with m.Case(Cmd.MATVEC):
                        m.d.sync += [len_ok.eq(length == 8), range_ok.eq(mv_ok)]
                    with m.Case(Cmd.MATVEC_GROUP):
                        gk, gw, gn = a16[0], fr.args[16:24], fr.args[24:32]
                        act_start = (gn << 2) + (gn << 1) + P.GROUP_ARGS.size
                        # nbytes_q holds where the activations start, for DISPATCH
                        m.d.sync += [len_ok.eq((gn != 0) & (length >= act_start)), nbytes_q.eq(act_start),
                                     acts_follow.eq(length != act_start),
                                     range_ok.eq((gk != 0) & (gk <= cfg.max_k) & (gw != 0) &
                                                 (gw <= cfg.result_bytes))]
                    with m.Case(Cmd.READ_RESULTS):
                        m.d.sync += [len_ok.eq(length == P.ARG_BYTES[Cmd.READ_RESULTS]),
                                     range_ok.eq((cnt != 0) & (off + cnt <= cfg.max_m) & (width != 0) &
                                                 (width <= cfg.result_bytes) & (nbytes <= self.max_payload - 1))]
                    with m.Default():
                        m.d.sync += known.eq(0)
                m.next = "DISPATCH"

            with m.State("DISPATCH"):
                with m.If(fr.error != 0):
                    m.d.sync += resp_cmd.eq(P.NACK)
                    respond(fr.error)
                with m.Elif(~known):
                    respond(Status.UNKNOWN_COMMAND)
                with m.Elif(~len_ok):
                    respond(Status.BAD_LENGTH)
                with m.Elif(~range_ok):
                    respond(Status.OUT_OF_RANGE)
                with m.Else():
                    with m.Switch(fr.cmd):
                        with m.Case(Cmd.INFO):
                            respond(Status.OK, 1 + len(self.info), EXTRA_INFO)
                        with m.Case(Cmd.RESET):
                            respond(Status.OK)
                        with m.Case(Cmd.WRITE_WEIGHTS):
                            m.d.sync += [waddr.eq(a32_0), lane.eq(0), idx.eq(4)]
                            m.next = "WW_ADDR"
                        with m.Case(Cmd.LOAD_ACTIVATIONS):
                            m.d.sync += [waddr.eq(a16[0]), lane.eq(0), idx.eq(2), grouped.eq(0)]
                            m.next = "LA_ADDR"
                        with m.Case(Cmd.MATVEC_GROUP):
                            # k moves to where MATVEC has it; each layer entry shifts in below it.
                            m.d.sync += [fr.args[48:64].eq(a16[0]), res_width.eq(fr.args[16:24]),
                                         layers_left.eq(fr.args[24:32]), word32.eq(0), grouped.eq(1),
                                         waddr.eq(0), lane.eq(0), idx.eq(nbytes_q)]
                            with m.If(acts_follow):
                                m.next = "LA_ADDR"
                            with m.Else():
                                m.next = "GL_START"  # no activations: use those loaded before
                        with m.Case(Cmd.CHECK_WEIGHTS):
                            m.d.comb += crc32.start.eq(1)
                            m.d.sync += [waddr.eq(a32_0), nwords.eq(a32_1)]
                            m.next = "CW_NEXT"
                        with m.Case(Cmd.MATVEC):
                            m.d.sync += [idx.eq(0), grouped.eq(0), word32.eq(0)]
                            m.next = "MV_CMD"
                        with m.Case(Cmd.READ_RESULTS):
                            m.d.sync += [idx.eq(a16[0]), res_width.eq(fr.args[32:40])]
                            respond(Status.OK, 1 + nbytes_q, EXTRA_RESULTS)

            # WRITE_WEIGHTS / LOAD_ACTIVATIONS: payload byte idx -> lane of word waddr.
            for prefix, limit, lanes in (("WW", W, cfg.word_bytes), ("LA", A, cfg.cols)):
                with m.State(f"{prefix}_ADDR"):
                    m.d.comb += self.buf.addr.eq(idx)
                    m.next = f"{prefix}_DATA"
                with m.State(f"{prefix}_DATA"):
                    with m.If(waddr >= limit):
                        respond(Status.OUT_OF_RANGE)
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
                        with m.If(idx == last_idx):
                            if prefix == "LA":
                                with m.If(grouped):
                                    m.next = "GL_START"
                                with m.Else():
                                    respond(Status.OK)
                            else:
                                respond(Status.OK)
                        with m.Else():
                            m.next = f"{prefix}_ADDR"

            # MATVEC_GROUP: shift each 6-byte layer entry (base u32, m u16) into
            # fr.args[0:48], check it as MATVEC would, run it on the MATVEC path.
            with m.State("GL_START"):
                m.d.sync += [idx.eq(0), gptr.eq(P.GROUP_ARGS.size), lane.eq(0)]
                m.next = "GL_ADDR"
            with m.State("GL_ADDR"):
                m.d.comb += self.buf.addr.eq(gptr)
                m.next = "GL_DATA"
            with m.State("GL_DATA"):
                m.d.sync += [fr.args[:48].eq(Cat(fr.args[8:48], self.buf.data)),
                             gptr.eq(gptr + 1), lane.eq(lane + 1)]
                with m.If(lane == P.GROUP_LAYER.size - 1):
                    m.d.sync += lane.eq(0)
                    m.next = "GL_CHECK"
                with m.Else():
                    m.next = "GL_ADDR"
            with m.State("GL_CHECK"):
                # the results of all layers so far, and this one's, fit the results memory
                m.d.sync += range_ok.eq(mv_ok & (idx + a16[2] <= cfg.max_m))
                m.next = "GL_RUN"
            with m.State("GL_RUN"):
                with m.If(range_ok):
                    m.next = "MV_CMD"
                with m.Else():
                    respond(Status.OUT_OF_RANGE)
            with m.State("GL_END"):
                # idx results of res_width bytes: READ_RESULTS' count and width fields
                m.d.sync += [last_res.eq(idx - 1), fr.args[16:32].eq(idx), fr.args[32:40].eq(res_width)]
                m.next = "GL_LEN"
            with m.State("GL_LEN"):
                m.d.sync += nbytes_q.eq(nbytes + 4)  # the cycle count comes first
                if cfg.max_m * cfg.result_bytes + 5 > 0xFFFF:  # only then can it overflow
                    with m.If(nbytes > 0xFFFF - 5):
                        respond(Status.OUT_OF_RANGE)
                    with m.Else():
                        m.next = "GL_REPLY"
                else:
                    m.next = "GL_REPLY"
            with m.State("GL_REPLY"):
                respond(Status.OK, 1 + nbytes_q, EXTRA_GROUP)

            # CHECK_WEIGHTS: read each word back and run its bytes through CRC-32.
            with m.State("CW_NEXT"):
                with m.If(nwords == 0):
                    m.next = "CW_END"
                with m.Else():
                    m.d.comb += eng.weights.addr.eq(waddr)
                    m.next = "CW_LATCH"
            with m.State("CW_LATCH"):
                m.d.sync += [shreg.eq(eng.weights.rdata), lane.eq(0)]
                m.next = "CW_BYTES"
            with m.State("CW_BYTES"):
                m.d.comb += [crc32.data.eq(shreg[:8]), crc32.valid.eq(1)]
                m.d.sync += [shreg.eq(shreg >> 8), lane.eq(lane + 1)]
                with m.If(lane == cfg.word_bytes - 1):
                    m.d.sync += [waddr.eq(waddr + 1), nwords.eq(nwords - 1)]
                    m.next = "CW_NEXT"
            with m.State("CW_END"):  # the CRC register has taken the last byte
                m.d.sync += word32.eq(crc32.crc)
                respond(Status.OK, 5, EXTRA_WORD32)

            # MATVEC: start the engine, store every result, report the cycle count.
            with m.State("MV_CMD"):
                m.d.comb += [eng.cmd.valid.eq(1), eng.cmd.payload.base.eq(a32_0),
                             eng.cmd.payload.m.eq(a16[2]), eng.cmd.payload.k.eq(a16[3])]
                with m.If(eng.cmd.ready):
                    m.next = "MV_RUN"
            with m.State("MV_RUN"):
                m.d.comb += [eng.result.ready.eq(1), res_wr.addr.eq(idx),
                             res_wr.data.eq(eng.result.payload.value), res_wr.en.eq(eng.result.valid)]
                with m.If(eng.result.valid):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(eng.result.payload.last):
                        m.next = "MV_END"
            with m.State("MV_END"):
                m.d.sync += word32.eq(word32 + eng.cycles)  # a group's layers add up
                with m.If(grouped):
                    m.d.sync += layers_left.eq(layers_left - 1)
                    with m.If(layers_left == 1):
                        m.next = "GL_END"
                    with m.Else():
                        m.next = "GL_ADDR"
                with m.Else():
                    respond(Status.OK, 5, EXTRA_WORD32)

            # The response: header, status byte, then what the command returns.
            with m.State("RESP_HDR"):
                m.d.comb += self.header.valid.eq(1)
                with m.If(self.header.ready):
                    m.next = "RESP_STATUS"
            with m.State("RESP_STATUS"):
                m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(status)]
                with m.If(self.payload.ready):
                    m.d.sync += [lane.eq(0), shreg.eq(word32)]
                    with m.Switch(extra):
                        with m.Case(EXTRA_WORD32, EXTRA_GROUP):
                            m.next = "RESP_WORD32"
                        with m.Case(EXTRA_INFO):
                            m.d.sync += idx.eq(0)
                            m.next = "RESP_INFO"
                        with m.Case(EXTRA_RESULTS):
                            m.next = "RESP_RES_ADDR"
                        with m.Default():
                            m.next = "DONE"
            with m.State("RESP_WORD32"):
                m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(shreg[:8])]
                with m.If(self.payload.ready):
                    m.d.sync += [shreg.eq(shreg >> 8), lane.eq(lane + 1)]
                    with m.If(lane == 3):
                        with m.If(extra == EXTRA_GROUP):  # the results follow the cycles
                            m.d.sync += idx.eq(0)
                            m.next = "RESP_RES_ADDR"
                        with m.Else():
                            m.next = "DONE"
            with m.State("RESP_INFO"):
                m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(info_rom[idx])]
                with m.If(self.payload.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == len(self.info) - 1):
                        m.next = "DONE"
            with m.State("RESP_RES_ADDR"):
                m.d.comb += res_rd.addr.eq(idx)
                m.next = "RESP_RES_LATCH"
            with m.State("RESP_RES_LATCH"):
                m.d.sync += [shreg.eq(res_rd.data.as_signed()), lane.eq(0)]  # sign-extends
                m.next = "RESP_RES_BYTES"
            with m.State("RESP_RES_BYTES"):
                m.d.comb += [self.payload.valid.eq(1), self.payload.payload.eq(shreg[:8])]
                with m.If(self.payload.ready):
                    m.d.sync += [shreg.eq(shreg >> 8), lane.eq(lane + 1)]
                    with m.If(lane == res_width - 1):
                        m.d.sync += idx.eq(idx + 1)
                        with m.If(idx == last_res):
                            m.next = "DONE"
                        with m.Else():
                            m.next = "RESP_RES_ADDR"
            with m.State("DONE"):
                m.d.comb += self.frame.ready.eq(1)
                m.next = "IDLE"
        return m
