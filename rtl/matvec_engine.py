"""The matvec engine: weight store, activation buffer, tile sequencer, decoder, MAC
array and accumulators, as a pipeline that never stalls once a tile has started."""

from amaranth import Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ternary_core.engine_config import EngineConfig

from .decoder import WeightDecoder
from .mac_array import TernaryMacArray
from .weight_store import WeightBusSignature, WeightStore, WeightWriteSignature



def command_layout(addr_bits):
    """MATVEC command: base word address of the layer, output rows M, inputs K."""
    return data.StructLayout({"base": unsigned(addr_bits), "m": unsigned(16), "k": unsigned(16)})


def result_layout(rows, acc_bits):
    """One row tile of results: ``values[0..count-1]`` are rows ``r0 .. r0+count-1``
    (row tiles come in order from row 0); ``last`` marks the command's final tile."""
    return data.StructLayout({"values": data.ArrayLayout(signed(acc_bits), rows),
                              "count": range(rows + 1), "last": unsigned(1)})


class MatvecEngine(wiring.Component):
    """``acc = W~ . x`` for one stored layer, one row tile of results per beat.

    The layer sits in the weight store in the native layout (one tile per word, see
    :mod:`ternary_core.formats.native`) from word ``base``; activations sit in the activation
    buffer (``cols`` bytes per word, value ``k`` at byte ``k % cols`` of word
    ``k // cols``). A command walks the ``ceil(M/rows) x ceil(K/cols)`` tiles, one per
    cycle::

        sequencer -> RAM read -> register -> decode, -x -> register -> MAC array
        (pipelined tree) -> accumulate -> result buffer -> result stream

    (with ``fetch_register``, an address register in front of the RAM read too).

    Nothing behind the sequencer ever stalls: the sequencer starts a row tile only
    when the result buffer has a slot for it (a credit counter), so back-pressure on
    ``result`` reaches only the sequencer, and no ready signal runs through the
    datapath.

    Throughput and latency: a command takes ``ceil(M/rows)*ceil(K/cols) + 1`` cycles
    of the sequencer (:meth:`issue_cycles`; the ``cycles`` port) when results are taken
    as they come and ``ceil(K/cols)`` is at least :attr:`full_rate_k_tiles`; the
    sequencer then accepts the next command while the last results are still in the
    pipeline, so back-to-back commands run at the array's rate. The last result follows
    the last beat by :attr:`latency` cycles.

    Parameters
    ----------
    config : EngineConfig
    weight_store : "generic" or "ice40_spram" (see :class:`WeightStore`)
    weight_source : "store" (the weight store, addressed from ``base``) or "stream": no
        store; the tiles come in issue order on ``wstream`` (one word a beat; the
        sequencer waits for each, so a slower source only spaces the beats out) and the
        command's ``base`` is ignored. This is the engine a memory streams a layer into
        (:class:`rtl.sdram.streamed_matvec.StreamedMatvec`).
    base3_impl : "arith", "rom" or "bram" (see :class:`WeightDecoder`; "bram" reads its
        table in the decode stage's register, so the latency is the same)
    word_writes : adds ``wgt`` (the store's whole-word writes, see :class:`WeightStore`).

    Two fields of the config shape the pipeline: ``fetch_register`` registers the RAM
    outputs before decoding (a block RAM's clock-to-out is most of a 10 ns cycle on its
    own: 5.8 ns on an ECP5 DP16KD; the iCEBreaker, at 36 MHz and short of logic cells,
    goes without), and ``result_slots`` is the number of row tiles the result buffer
    holds (the iCEBreaker's 2 suffice from ceil(K/cols) = 6, and the shipped model
    gives its 4x10 array 13).

    Ports
    -----
    cmd : In(stream of command_layout)
        Accepted when the sequencer is free. A command with M = 0 or K = 0 does nothing.
    result : Out(stream of result_layout)
        Row tiles in order; ``last`` marks the final tile of each command.
    wstream : In(stream of 8 * word_bytes bits)
        (``weight_source="stream"``, instead of ``weights``) the layer's words in the
        order the sequencer walks the tiles: the native layout from ``base``.
    weights : In(WeightBusSignature)
        Access to the weight store for the command engine while the sequencer is free.
        Pipelined, with no back-pressure: an address (a read, or a write when
        ``wmask`` is not zero) may be presented every cycle, reads and writes in any
        order; each reaches the RAM two cycles after it is presented, in the order
        presented, so a read sees every write presented on an earlier cycle (the one
        just before included) and none presented later. Read data is on ``rdata`` for
        the one cycle :attr:`weight_read_latency` cycles after its address. Accesses
        presented from the cycle before a command is accepted until it is done are
        lost (``cmd`` is not accepted while a write is in the registers).
    wgt : In(WeightWriteSignature)
        (``word_writes``) whole words into the store at ``addr`` the cycle ``en`` is
        high, straight to the RAM's write port, while the sequencer reads elsewhere in
        the store (the vector machine's XFER IN to WGT fills one half while a MATVEC reads
        the other); a read of a word written in the same cycle gets the old word.
    acts : Out(WritePort.Signature)
        Byte-granular writes to the activation buffer (the engine *is* this port),
        taking effect two cycles later like the weight writes. Only while no command is
        in flight.
    busy : Out(1)
        A command is being issued or has results not yet taken.
    cycles : Out(32)
        Sequencer cycles of the last command, from its handshake to its last beat;
        valid from the cycle after the last beat until the next command.
    """

    def __init__(self, config, *, weight_store="generic", base3_impl="arith", weight_source="store",
                 word_writes=False):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {config!r}")
        if weight_source not in ("store", "stream"):
            raise ValueError(f"weight_source must be 'store' or 'stream', not {weight_source!r}")
        self.weight_source = weight_source
        self.fetch_register = bool(config.fetch_register)
        self.result_slots = config.result_slots
        if not isinstance(self.result_slots, int) or self.result_slots < 2:
            raise ValueError(f"result_slots must be an integer of at least 2, not {self.result_slots!r}")
        self.config = config
        self.weight_store_impl = weight_store
        self.base3_impl = base3_impl
        self.addr_bits = max(1, (config.weight_words - 1).bit_length())
        self.act_addr_bits = max(1, (config.act_words - 1).bit_length())
        self.array = TernaryMacArray(config.rows, config.cols,
                                     levels_per_stage=config.adder_levels_per_stage)
        weights = {"weights": In(WeightBusSignature(self.addr_bits, config.word_bytes))} \
            if weight_source == "store" else {"wstream": In(stream.Signature(8 * config.word_bytes))}
        if word_writes:
            if weight_source != "store":
                raise ValueError("word_writes needs weight_source='store' (it writes the store)")
            weights["wgt"] = In(WeightWriteSignature(self.addr_bits, config.word_bytes))
        super().__init__({
            "cmd": In(stream.Signature(command_layout(self.addr_bits))),
            "result": Out(stream.Signature(result_layout(config.rows, config.acc_bits))),
            **weights,
            "acts": Out(memory.WritePort.Signature(addr_width=self.act_addr_bits,
                                                   shape=unsigned(8 * config.cols), granularity=8)),
            "busy": Out(1),
            "cycles": Out(32),
        })

    @property
    def latency(self):
        """Cycles from the last beat's issue to the last result on ``result`` (valid):
        the front stages, the MAC array's pipeline, then the write into the result
        buffer (first word fall-through)."""
        return self.front_stages + self.array.latency + 1

    @property
    def weight_read_latency(self):
        """Cycles from an address on ``weights`` to its data on ``weights.rdata``: the
        two registers every outside access takes, the RAM, and the RAM output register
        if there is one."""
        return 4 if self.fetch_register else 3

    @property
    def front_stages(self):
        """Stages from a beat's issue to the MAC array's inputs: with ``fetch_register``
        the RAM address register, the RAM read, the register on its outputs and the
        register after the decoder; without, the RAM read and the decoder's register."""
        return 4 if self.fetch_register else 2

    @property
    def full_rate_k_tiles(self):
        """The least ``ceil(K/cols)`` at which the result buffer never holds up the
        sequencer (results taken as they come): a row tile holds its slot from its
        first beat's issue until its handshake, ``ceil(K/cols) + latency`` cycles, and
        the tiles start ``ceil(K/cols)`` apart."""
        n = 1
        while -(-(n + self.latency) // n) > self.result_slots:
            n += 1
        return n

    def issue_cycles(self, m, k):
        """The ``cycles`` of an ``m x k`` command whose results are taken as they come
        (and ``ceil(k/cols) >= full_rate_k_tiles``, or ``ceil(m/rows) <= result_slots``)."""
        cfg = self.config
        return -(-m // cfg.rows) * -(-k // cfg.cols) + 1

    def _store_fetch(self, m, store, act_rd, running, waddr, aaddr):
        """The weight word of a beat from the store (and the bus to it), with its
        activations: ``(word_q, acts_q)`` at the decoder's input."""
        C = self.config.cols
        # --- RAM reads (stage 1), their register (stage 2, optional) -----------------
        # Outside accesses reach the RAMs through registers too (address, data, mask):
        # the RAMs are spread over the whole chip, and the command engine's address
        # logic plus that fan-out did not fit one 10 ns cycle.
        # Reads and writes take the same two registers, so an access presented on cycle
        # t has the RAM on cycle t + 2 whatever it is: with a shorter path for reads, a
        # read the cycle after a write would want the RAM on the write's cycle (and was
        # lost to it, issue #25).
        w_addr_1, w_addr_q = Signal.like(self.weights.addr), Signal.like(self.weights.addr)
        w_data_1, w_mask_1 = Signal.like(self.weights.wdata), Signal.like(self.weights.wmask)
        w_data_q, w_mask_q = Signal.like(self.weights.wdata), Signal.like(self.weights.wmask)
        m.d.sync += [w_addr_1.eq(self.weights.addr), w_data_1.eq(self.weights.wdata),
                     w_mask_1.eq(self.weights.wmask),
                     w_addr_q.eq(w_addr_1), w_data_q.eq(w_data_1), w_mask_q.eq(w_mask_1)]
        if self.fetch_register:
            # The address (and write mask) reach the RAMs from a register of their own,
            # the choice between the sequencer and the outside made in front of it: the
            # weight RAMs span the chip (7 ns of routing on the ULX3S), which leaves no
            # room for the multiplexer in the same cycle. This register is the outside
            # accesses' second; the sequencer's reads take a cycle more, and its
            # activation address is registered to match.
            bus_addr, bus_wmask = Signal.like(store.bus.addr), Signal.like(store.bus.wmask)
            aaddr_q = Signal.like(aaddr)
            m.d.sync += [bus_addr.eq(Mux(running, waddr, w_addr_1)),
                         bus_wmask.eq(Mux(running, 0, w_mask_1)), aaddr_q.eq(aaddr)]
            m.d.comb += [store.bus.addr.eq(bus_addr), store.bus.wdata.eq(w_data_q),
                         store.bus.wmask.eq(bus_wmask), act_rd.addr.eq(aaddr_q)]
        else:
            m.d.comb += [
                store.bus.addr.eq(Mux(running, waddr, w_addr_q)),
                store.bus.wdata.eq(w_data_q),
                store.bus.wmask.eq(Mux(running, 0, w_mask_q)),
                act_rd.addr.eq(aaddr),
            ]
        word_q = Signal.like(store.bus.rdata)
        acts_q = Signal(data.ArrayLayout(signed(8), C))
        if self.fetch_register:
            acts_read = Signal.like(act_rd.data)
            m.d.sync += [word_q.eq(store.bus.rdata), acts_read.eq(act_rd.data), acts_q.eq(acts_read)]
        else:
            m.d.comb += [word_q.eq(store.bus.rdata), acts_q.eq(act_rd.data)]
        m.d.comb += self.weights.rdata.eq(word_q)
        return word_q, acts_q

    def _streamed_fetch(self, m, act_rd, aaddr):
        """The weight word of a beat from ``wstream``, taken at its issue and delayed to
        where a store's word would be (``front_stages - 1`` registers), with its
        activations read as the store's path reads them."""
        C = self.config.cols
        word = self.wstream.payload
        for i in range(self.front_stages - 1):
            q = Signal.like(self.wstream.payload, name=f"wstream_q{i}")
            m.d.sync += q.eq(word)
            word = q
        acts_q = Signal(data.ArrayLayout(signed(8), C))
        if self.fetch_register:
            aaddr_q, acts_read = Signal.like(aaddr), Signal.like(act_rd.data)
            m.d.sync += [aaddr_q.eq(aaddr), acts_read.eq(act_rd.data), acts_q.eq(acts_read)]
            m.d.comb += act_rd.addr.eq(aaddr_q)
        else:
            m.d.comb += [act_rd.addr.eq(aaddr), acts_q.eq(act_rd.data)]
        return word, acts_q

    def elaborate(self, platform):
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        m = Module()

        streamed = self.weight_source == "stream"
        if not streamed:
            word_writes = "wgt" in self.signature.members
            m.submodules.store = store = WeightStore(cfg.weight_words, cfg.word_bytes, self.weight_store_impl,
                                                     word_writes=word_writes)
            if word_writes:
                wiring.connect(m, wiring.flipped(self.wgt), store.wgt)
        # Yosys folds the register after an asynchronous read back into a block RAM, so a
        # board that needs the buffer in LUT RAM asks for it (cfg.act_lutram); plain
        # Verilog carries no vendor choice.
        m.submodules.act_mem = act_mem = memory.Memory(
            shape=unsigned(8 * C), depth=cfg.act_words, init=[],
            attrs={"ram_style": "distributed"} if cfg.act_lutram else None)
        # With the fetch register, the activation buffer is read asynchronously (LUT RAM
        # on an ECP5, next to the MAC array) and registered twice, in step with the
        # weight word (RAM, then register): a block RAM's output could not cross the chip
        # to the array within 10 ns. Without it, a block RAM read matches the weights.
        act_rd = act_mem.read_port(domain="comb") if self.fetch_register else \
            act_mem.read_port(transparent_for=())
        act_wr = act_mem.write_port(granularity=8)
        # Writes from outside land two cycles late, through two registers: their data
        # comes from the frame buffer's block RAM (about 6 ns to its output on an ECP5),
        # which is not next to either buffer; the first register can sit half way.
        acts_in = Signal.like(self.acts.data)
        acts_in_addr, acts_in_en = Signal.like(self.acts.addr), Signal.like(self.acts.en)
        m.d.sync += [acts_in.eq(self.acts.data), acts_in_addr.eq(self.acts.addr), acts_in_en.eq(self.acts.en),
                     act_wr.addr.eq(acts_in_addr), act_wr.data.eq(acts_in), act_wr.en.eq(acts_in_en)]
        m.submodules.decoder = decoder = WeightDecoder(cfg.layout, self.base3_impl)
        m.submodules.array = array = self.array
        res_shape = result_layout(R, cfg.acc_bits)
        # First-word-fall-through: its w_rdy is exactly "level < depth", which the
        # credits rely on (SyncFIFOBuffered's refuses a write while its output register
        # refills, and would drop a tile).
        m.submodules.out_fifo = fifo = SyncFIFO(width=res_shape.size, depth=self.result_slots)

        # --- sequencer: walks row tiles, and column tiles within each -----------------
        CW = 17  # counters reach max M or K (16 bits) plus one tile
        running = Signal()
        m_rows, k_cols = Signal(CW), Signal(CW)
        row, col = Signal(CW), Signal(CW)
        waddr, aaddr = Signal(self.addr_bits), Signal(self.act_addr_bits)
        credits = Signal(range(self.result_slots + 1), init=self.result_slots)
        # Writes still in their registers hold off the next command.
        wr_busy_1, wr_busy_2 = Signal(), Signal()
        writing = self.acts.en.any() if streamed else (self.weights.wmask.any() | self.acts.en.any())
        m.d.sync += [wr_busy_1.eq(writing), wr_busy_2.eq(wr_busy_1)]
        m.d.comb += [self.cmd.ready.eq(~running & ~wr_busy_1 & ~wr_busy_2),
                     self.busy.eq(running | (credits != self.result_slots))]
        with m.If(self.cmd.valid & self.cmd.ready):
            p = self.cmd.payload
            m.d.sync += [m_rows.eq(p.m), k_cols.eq(p.k), waddr.eq(p.base), aaddr.eq(0),
                         row.eq(0), col.eq(0), running.eq(p.m.any() & p.k.any())]

        first = ~col.any()
        col_next = (col + Const(C, CW))[:CW]
        row_next = (row + Const(R, CW))[:CW]
        last = col_next >= k_cols
        final = last & (row_next >= m_rows)
        rows_left = (m_rows - row)[:CW]
        nrows = Mux(rows_left >= Const(R, CW), R, rows_left[:Shape.cast(range(R + 1)).width])
        issue = Signal()
        if streamed:
            m.d.comb += [issue.eq(running & (~first | credits.any()) & self.wstream.valid),
                         self.wstream.ready.eq(issue)]
        else:
            m.d.comb += issue.eq(running & (~first | credits.any()))
        with m.If(issue):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(last):
                m.d.sync += [col.eq(0), aaddr.eq(0), row.eq(row_next)]
                with m.If(final):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [col.eq(col_next), aaddr.eq(aaddr + 1)]
        pop = self.result.valid & self.result.ready
        m.d.sync += credits.eq(credits - (issue & first) + pop)

        # What travels beside each beat, down a delay line as long as the datapath.
        meta_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "final": 1,
                                         "nrows": range(R + 1)})
        meta = [Signal(meta_layout, name="meta_issue")]
        m.d.comb += [meta[0].valid.eq(issue), meta[0].first.eq(first), meta[0].last.eq(last),
                     meta[0].final.eq(final), meta[0].nrows.eq(nrows)]
        for i in range(self.front_stages + array.latency):
            meta.append(Signal(meta_layout, name=f"meta_{i + 1}"))
            m.d.sync += meta[-1].eq(meta[-2])

        if streamed:
            word_q, acts_q = self._streamed_fetch(m, act_rd, aaddr)
        else:
            word_q, acts_q = self._store_fetch(m, store, act_rd, running, waddr, aaddr)

        # --- decode and negate (stage 3 register) --------------------------------------
        m.d.comb += decoder.word.eq(word_q)
        trits_d = Signal(2 * R * C)
        acts_d = Signal(data.ArrayLayout(signed(9), C))
        neg_d = Signal(data.ArrayLayout(signed(9), C))
        if decoder.latency:  # its block-RAM table read is this stage's register
            m.d.comb += trits_d.eq(decoder.trits.as_value())
        else:
            m.d.sync += trits_d.eq(decoder.trits.as_value())
        m.d.sync += [acts_d[c].eq(acts_q[c]) for c in range(C)]
        m.d.sync += [neg_d[c].eq(-acts_q[c]) for c in range(C)]

        # --- MAC array ---------------------------------------------------------------
        m.d.comb += [array.trits.eq(trits_d), array.acts.eq(acts_d), array.neg_acts.eq(neg_d)]

        # --- accumulate; a finished row tile goes into the result buffer ---------------
        s = meta[-1]
        acc = Signal(data.ArrayLayout(signed(cfg.acc_bits), R))
        new_acc = [Mux(s.first, 0, acc[r]) + array.sums[r] for r in range(R)]
        with m.If(s.valid):
            m.d.sync += [acc[r].eq(new_acc[r]) for r in range(R)]
        tile = Signal(res_shape)
        m.d.comb += [tile.values[r].eq(new_acc[r]) for r in range(R)]
        m.d.comb += [tile.count.eq(s.nrows), tile.last.eq(s.final),
                     fifo.w_data.eq(tile), fifo.w_en.eq(s.valid & s.last)]
        m.d.comb += [self.result.valid.eq(fifo.r_rdy), self.result.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.result.ready)]

        # --- cycle count -------------------------------------------------------------
        count = Signal(32)
        m.d.comb += self.cycles.eq(count)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += count.eq(1)
        with m.Elif(running):
            m.d.sync += count.eq(count + 1)
        return m
