"""The VM's transfer unit (:class:`TransferUnit`): runs one XFER IN or OUT
(ternary_core/offload/isa.py, ``XFn``) between the SDRAM's streams and an on-chip space,
beside the instructions after it; transfer_states.py is the sequencer's side.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ternary_core.offload.isa import SDRAM_WORD_BYTES, XFER_PROG, Space

from ..sdram.controller import StreamsSignature
from ..weight_store import WeightWriteSignature
from .memories import XFER_BITS

GROUP_SPACES = (Space.EMB, Space.HEAD, Space.KVK, Space.KVV)    # 8 int8 words a SDRAM word
HALF_SPACES = (Space.TMEM,)                                      # 4 int16 words a SDRAM word
WORD_SPACES = (Space.VMEM, Space.EMBS, Space.HEADS, Space.KVS)  # one word a SDRAM word
OUT_SPACES = GROUP_SPACES + HALF_SPACES + WORD_SPACES
# (PROG, IN only: a 64-bit word an SDRAM word, named by its XFER code)
IN_SPACES = OUT_SPACES + (Space.WGT, XFER_PROG)


def xfer_code(space):
    """The code of ``space`` in XFER's 4-bit c_space (and the unit's ``space``)."""
    return XFER_PROG if space == Space.PROG else int(space)
GROUP_WORDS = SDRAM_WORD_BYTES       # int8 words in an SDRAM word
COUNT_BITS = 32                      # n + (pos << npos_k): 16 + 16 << 15 bits
COUNT_WIDTH = 16                     # the streams' burst count
MAX_BURST = 1 << (COUNT_WIDTH - 1)
IN_FIFO_DEPTH, OUT_FIFO_DEPTH = 2, 4


def request_layout(address_width, addr_bits):
    return data.StructLayout({"out": 1, "space": 4, "c_addr": addr_bits, "s_addr": address_width,
                              "n": COUNT_BITS})


class TransferUnit(wiring.Component):
    """Runs one XFER IN or OUT at a time, beside the VM's other instructions.

    A transfer moves ``n`` SDRAM words (64 bits, little-endian) from SDRAM word ``s_addr`` and
    on-chip word ``c_addr`` up:

    - the row spaces (EMB, HEAD, KVK, KVV; int8): 8 words an SDRAM word, one write of 8 byte
      lanes of the space's 32-byte RAM row (``SpaceMemory``'s ``x_*``), so IN keeps up with an
      SDRAM that gives a word a cycle;
    - the scalar-word spaces (EMBS, HEADS, KVS) and VMEM: one word an SDRAM word (its low
      word bits; zero-extended on OUT); PROG (IN only, code ``XFER_PROG``): a 64-bit word
      an SDRAM word;
    - WGT (IN only): the engine's tile words, ``word_bytes / 8`` SDRAM words each (the first
      one lowest), onto the ``wgt`` port (the weight store's write port beside the engine's
      reads), registered.

    Sharing the memories with the VM:

    - IN writes through the space's second write, which yields to the VM's own write of the
      same memory in the same cycle (the VM's writes come out of pipelines that cannot wait;
      the compiler keeps their addresses, not their cycles, apart). The words wait in a
      2-word FIFO (``read_data``'s ready is that FIFO's room, a register, never the VM's
      write of the cycle), so a yield costs a cycle, not a word.
    - OUT reads the space through its port 0, which the VM's own reads use: the sequencer
      waits (``reading``) while the unit reads its words into a 4-word FIFO, and the FIFO
      then drains into ``write_data`` beside the instructions after it. This makes OUT as
      slow for the VM as its reads (a word a cycle while the SDRAM takes them); the
      compiler's OUTs are one KV row and one scale a head and layer.

    Requests are bursts of at most ``max_burst`` words (``n`` plus ``pos << npos_k`` may
    pass the streams' 16-bit count). A write request is offered from the transfer's start
    and held until taken while its words follow on ``write_data`` (the BurstWriter takes a
    word only while its request is offered, and the request with its last word).

    Parameters
    ----------
    address_width : int
        SDRAM word address bits (``(sdram_words - 1).bit_length()``).
    word_bytes, wgt_addr_bits : int
        The engine's tile word and its store's address bits (the ``wgt`` port).
    addr_bits : int
        On-chip word address bits.
    max_burst : int
        Words a request asks for at the most (:data:`MAX_BURST`; less in tests).

    Ports
    -----
    start : In(stream of :func:`request_layout`)
        A transfer (the sequencer has added the dynamic offsets and ``pos << npos_k``); taken
        when no transfer runs.
    busy : Out(1)
        A transfer runs: words to request, receive, write on chip, read or send.
    reading : Out(1)
        An OUT is reading its on-chip words: port 0 of ``space`` is the unit's.
    space : Out(4)
        The on-chip space of the transfer (or the last one).
    w_addr, w_data, w_en : Out; w_ready : In
        An SDRAM word's worth for ``space`` from word ``w_addr``; written when ``w_ready``.
    r_addr, r_en : Out; r_data : In
        A read of ``space`` (port 0); ``r_data`` is its SDRAM word one cycle later.
    sdram : Out(StreamsSignature(address_width, 64))
    wgt : Out(WeightWriteSignature(wgt_addr_bits, word_bytes))

    Latency: a transfer starts the cycle after ``start``; IN writes a word a cycle after it
    arrives (two cycles from ``read_data`` to the memory), OUT sends a word two cycles after
    its read.
    """

    def __init__(self, address_width, word_bytes, wgt_addr_bits, addr_bits, *,
                 max_burst=MAX_BURST):
        for name, v in (("address_width", address_width), ("word_bytes", word_bytes),
                        ("wgt_addr_bits", wgt_addr_bits), ("addr_bits", addr_bits),
                        ("max_burst", max_burst)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TransferUnit: {name} must be a positive integer, not {v!r}")
        if max_burst > MAX_BURST:
            raise ValueError(f"TransferUnit: max_burst must be at most {MAX_BURST}, not "
                             f"{max_burst}")
        self.address_width, self.word_bytes, self.max_burst = address_width, word_bytes, max_burst
        # WGT needs whole SDRAM words a tile word (else IN of WGT is refused: wgt_ok)
        self.wgt_ok = word_bytes % SDRAM_WORD_BYTES == 0
        self.tile_words = max(1, word_bytes // SDRAM_WORD_BYTES)
        super().__init__({
            "start": In(stream.Signature(request_layout(address_width, addr_bits))),
            "busy": Out(1), "reading": Out(1), "space": Out(4),
            "w_addr": Out(addr_bits), "w_data": Out(XFER_BITS), "w_en": Out(1), "w_ready": In(1),
            "r_addr": Out(addr_bits), "r_en": Out(1), "r_data": In(XFER_BITS),
            "sdram": Out(StreamsSignature(address_width, XFER_BITS, COUNT_WIDTH)),
            "wgt": Out(WeightWriteSignature(wgt_addr_bits, word_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        sd = self.sdram
        out = Signal()
        req_addr = Signal(self.address_width)
        req_left = Signal(COUNT_BITS)          # words not yet requested
        recv_left = Signal(COUNT_BITS)         # IN: words not yet taken from read_data
        move_left = Signal(COUNT_BITS)         # IN: words not yet written; OUT: not yet read
        c_addr = Signal.like(self.w_addr)
        group = Signal()
        m.d.comb += group.eq(Cat(*(self.space == s for s in GROUP_SPACES + HALF_SPACES)).any())
        wgt = self.space == Space.WGT
        half = Cat(*(self.space == s for s in HALF_SPACES)).any()
        step = Mux(group, Mux(half, GROUP_WORDS // 2, GROUP_WORDS), 1)   # words an SDRAM word
        m.submodules.in_fifo = in_fifo = SyncFIFO(width=XFER_BITS, depth=IN_FIFO_DEPTH)
        m.submodules.out_fifo = out_fifo = SyncFIFO(width=XFER_BITS, depth=OUT_FIFO_DEPTH)
        in_flight = Signal()                   # OUT: a read whose word lands next cycle
        m.d.comb += [
            self.busy.eq((req_left != 0) | (recv_left != 0) | (move_left != 0) | in_flight
                         | in_fifo.r_rdy | out_fifo.r_rdy | self.wgt.en),
            self.reading.eq(out & ((move_left != 0) | in_flight)),
            self.start.ready.eq(~self.busy),
        ]
        with m.If(self.start.valid & self.start.ready):
            p = self.start.payload
            m.d.sync += [out.eq(p.out), self.space.eq(p.space), c_addr.eq(p.c_addr),
                         req_addr.eq(p.s_addr), req_left.eq(p.n), move_left.eq(p.n),
                         recv_left.eq(Mux(p.out, 0, p.n))]

        # requests: bursts of at most MAX_BURST words (a write request held until taken)
        count = Mux(req_left >= self.max_burst, self.max_burst, req_left)
        for req in (sd.read_req, sd.write_req):
            m.d.comb += [req.payload.addr.eq(req_addr), req.payload.count.eq(count)]
        m.d.comb += [sd.read_req.valid.eq(~out & (req_left != 0)),
                     sd.write_req.valid.eq(out & (req_left != 0))]
        with m.If((sd.read_req.valid & sd.read_req.ready) |
                  (sd.write_req.valid & sd.write_req.ready)):
            m.d.sync += [req_addr.eq(req_addr + count), req_left.eq(req_left - count)]

        self._in_path(m, in_fifo, recv_left, move_left, c_addr, step, group | ~wgt, out)
        self._out_path(m, out_fifo, in_flight, move_left, c_addr, step, out)
        return m

    def _in_path(self, m, fifo, recv_left, move_left, c_addr, step, to_space, out):
        """IN: read_data into the FIFO; its head into the space (when the memory's write
        is free) or into a tile word for ``wgt``."""
        sd = self.sdram
        m.d.comb += [sd.read_data.ready.eq(fifo.w_rdy & (recv_left != 0)),
                     fifo.w_en.eq(sd.read_data.valid & sd.read_data.ready),
                     fifo.w_data.eq(sd.read_data.payload)]
        with m.If(fifo.w_en):
            m.d.sync += recv_left.eq(recv_left - 1)
        word = fifo.r_data
        m.d.comb += [self.w_addr.eq(c_addr), self.w_data.eq(word),
                     self.w_en.eq(fifo.r_rdy & to_space & ~out)]
        take = fifo.r_rdy & Mux(to_space, self.w_ready, 1)
        m.d.comb += fifo.r_en.eq(take)
        m.d.sync += self.wgt.en.eq(0)
        with m.If(take):
            m.d.sync += move_left.eq(move_left - 1)
            with m.If(to_space):
                m.d.sync += c_addr.eq(c_addr + step)
            with m.Else():
                self._tile_word(m, word, c_addr)

    def _tile_word(self, m, word, c_addr):
        """WGT: ``tile_words`` SDRAM words a tile word, the first one lowest; the whole
        word onto ``wgt`` (a register) with the last."""
        T = self.tile_words
        tile = Signal(8 * self.word_bytes)
        nxt = Cat(tile[XFER_BITS:], word)[:8 * self.word_bytes] if T > 1 else word
        sub = Signal(range(T))
        m.d.sync += tile.eq(nxt)
        last = sub == T - 1
        m.d.sync += sub.eq(Mux(last, 0, sub + 1))
        with m.If(last):
            m.d.sync += [self.wgt.en.eq(1), self.wgt.addr.eq(c_addr), self.wgt.data.eq(nxt),
                         c_addr.eq(c_addr + 1)]

    def _out_path(self, m, fifo, in_flight, move_left, c_addr, step, out):
        """OUT: the space's words read into the FIFO while it has room for every read in
        flight, and from it onto write_data."""
        sd = self.sdram
        room = (fifo.level + in_flight) < OUT_FIFO_DEPTH
        m.d.comb += [self.r_addr.eq(c_addr), self.r_en.eq(out & (move_left != 0) & room)]
        m.d.sync += in_flight.eq(self.r_en)
        with m.If(self.r_en):
            m.d.sync += [move_left.eq(move_left - 1), c_addr.eq(c_addr + step)]
        m.d.comb += [fifo.w_en.eq(in_flight), fifo.w_data.eq(self.r_data),
                     sd.write_data.valid.eq(fifo.r_rdy), sd.write_data.payload.eq(fifo.r_data),
                     fifo.r_en.eq(sd.write_data.ready)]
