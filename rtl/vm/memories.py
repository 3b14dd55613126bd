"""The VM's memory spaces: one ``lib.memory.Memory`` each, written by uploads (``load``)
or by the VM, read by the VM and by ``peek`` (read-back for CHECK_MEM / READ_MEM)."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.offload.isa import SDRAM_WORD_BYTES

XFER_BITS = 8 * SDRAM_WORD_BYTES        # an SDRAM word: what XFER moves in one write


class SpaceMemory(wiring.Component):
    """``depth`` words of ``word_bits`` bits, stored ``wide`` words to a RAM row so that a
    wide read gives ``wide`` consecutive words (aligned to ``wide``) in one cycle (the
    32-byte rows of the DOT/AXPY lanes); ``wide`` is a power of two.

    Parameters
    ----------
    word_bits, depth : int
        The space's word (as uploads and narrow reads see it) and its number of words.
    wide : int
        Words per RAM row (1: a plain memory).
    reads : int
        Read ports for the VM (port 0 is shared with ``peek`` while the VM is idle).
    shared : bool
        The space is written only while its reads are idle (uploads, not the VM): port 0
        then takes the write's address while ``w_en`` is high, so that it and the write
        are one port of the block RAM, and a second read port does not copy the memory
        (TMEM: 12 DP16KD on the ULX3S instead of 22). The other ports read the written
        word in the write's cycle (no read-first order to keep across ports).
    lutram : bool
        Distributed (LUT) RAM rather than a block RAM: for the small spaces (a few
        hundred words), each of which would otherwise take a whole DP16KD.
    xfer : bool
        The space is one that XFER moves to and from the SDRAM (transfer.py): a second
        write, ``x_*``, that yields to ``w_*`` in a cycle that has both, and ``x_rdata``.
        Its unit is an SDRAM word (:data:`XFER_BITS`): in a wide memory the aligned group
        of ``XFER_BITS // word_bits`` words (one write of that many byte lanes), else one
        word (its low ``word_bits``).

    Ports
    -----
    w_addr, w_data, w_en : In
        One word write (an upload or the VM; the machine muxes them).
    r_addr[k] : In, r_data[k] : Out
        Narrow reads: ``r_data`` holds word ``r_addr`` one cycle later.
    r_row[k] : Out
        The whole RAM row of ``r_addr`` (``wide`` words), one cycle later.
    x_addr, x_data, x_en : In; x_rdata : Out
        (``xfer``) The transfer's write of an SDRAM word's worth at word ``x_addr``
        (not written when ``w_en`` is high: the writer sees ``w_en`` and waits), and
        port 0's read as an SDRAM word (the group holding word ``r_addr[0]``, or that
        word zero-extended), one cycle later.
    """

    def __init__(self, word_bits, depth, *, wide=1, reads=1, shared=False, lutram=False,
                 xfer=False, single_from=0, name="space"):
        for pname, v, lo in (("word_bits", word_bits, 1), ("depth", depth, 1), ("wide", wide, 1),
                             ("reads", reads, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: {pname} must be an integer >= {lo}, not {v!r}")
        if wide & (wide - 1):
            raise ValueError(f"{name}: wide must be a power of two, not {wide!r}")
        self.word_bits, self.depth, self.wide, self.reads = word_bits, depth, wide, reads
        self.shared, self.lutram, self.xfer = bool(shared), bool(lutram), bool(xfer)
        if xfer and (shared or (wide > 1 and (XFER_BITS % word_bits or
                                              wide * word_bits % XFER_BITS))):
            raise ValueError(f"{name}: an xfer space needs its own write port and, if wide, "
                             f"whole words and rows of {XFER_BITS} bits")
        if single_from and not (0 < single_from < depth and wide == 1 and not shared
                                and not lutram):
            raise ValueError(f"{name}: single_from must be inside the depth, of a plain "
                             f"block-RAM space (not wide or shared), not {single_from!r}")
        self.single_from = single_from
        self.rows = -(-depth // wide)
        self.addr_bits = max(1, (self.rows * wide - 1).bit_length())
        members = {"w_addr": In(self.addr_bits), "w_data": In(word_bits), "w_en": In(1)}
        for k in range(reads):
            members[f"r_addr{k}"] = In(self.addr_bits)
            members[f"r_data{k}"] = Out(word_bits)
            members[f"r_row{k}"] = Out(word_bits * wide)
        if xfer:
            members.update({"x_addr": In(self.addr_bits), "x_data": In(XFER_BITS),
                            "x_en": In(1), "x_rdata": Out(XFER_BITS)})
        super().__init__(members)

    def r_addr(self, k):
        return getattr(self, f"r_addr{k}")

    def r_data(self, k):
        return getattr(self, f"r_data{k}")

    def r_row(self, k):
        return getattr(self, f"r_row{k}")

    def elaborate(self, platform):
        m = Module()
        W, B = self.wide, self.word_bits
        lb = (W - 1).bit_length()
        attrs = {"ram_style": "distributed"} if self.lutram else None
        lo_rows = self.single_from or self.rows
        m.submodules.mem = mem = memory.Memory(shape=unsigned(W * B), depth=lo_rows, init=[],
                                               attrs=attrs)
        wr = mem.write_port(granularity=B) if W > 1 else mem.write_port()
        port0 = Signal(self.addr_bits)     # read port 0's address (and the write's, shared)
        m.d.comb += port0.eq(Mux(self.w_en, self.w_addr, self.r_addr(0)) if self.shared
                             else self.r_addr(0))
        w_addr = port0 if self.shared else self.w_addr
        if self.xfer:
            self._xfer_write(m, wr, lb)
        else:
            m.d.comb += [wr.addr.eq(w_addr >> lb), wr.data.eq(self.w_data.replicate(W))]
            if W > 1:
                m.d.comb += wr.en.eq(Mux(self.w_en, 1 << self.w_addr[:lb], 0))
            else:
                m.d.comb += wr.en.eq(self.w_en)
        for k in range(self.reads):
            rd = mem.read_port(transparent_for=(wr,) if self.shared and k else ())
            m.d.comb += [rd.addr.eq((port0 if k == 0 else self.r_addr(k)) >> lb),
                         self.r_row(k).eq(rd.data)]
            if W > 1:
                sel = Signal(lb, name=f"sel{k}")
                m.d.sync += sel.eq(self.r_addr(k)[:lb])
                m.d.comb += self.r_data(k).eq(rd.data.word_select(sel, B))
                if self.xfer and k == 0:
                    g = (XFER_BITS // B).bit_length() - 1
                    m.d.comb += self.x_rdata.eq(rd.data.word_select(sel[g:], XFER_BITS))
            else:
                m.d.comb += self.r_data(k).eq(rd.data)
                if self.xfer and k == 0:
                    m.d.comb += self.x_rdata.eq(rd.data)
        if self.single_from:
            self._single_bank(m, wr, port0, w_addr)
        return m

    def _single_bank(self, m, wr, port0, w_addr):
        """Words from ``single_from``: their own RAM, written by the one write (``w_*`` or
        else ``x_*``, as the first RAM's, whose write is masked off for them), read on port
        0, whose data (and ``x_rdata``) it gives in the cycle after an address there."""
        S, B = self.single_from, self.word_bits
        m.submodules.single = hi = memory.Memory(shape=unsigned(B), depth=self.depth - S,
                                                 init=[])
        hw, hr = hi.write_port(), hi.read_port(transparent_for=())
        addr, data, en = w_addr, self.w_data, self.w_en
        if self.xfer:
            w_sel = self.w_en | ~self.x_en
            addr, data = Mux(w_sel, w_addr, self.x_addr), Mux(w_sel, self.w_data, self.x_data[:B])
            en = self.w_en | self.x_en
        w_hi, r_hi, was_hi = addr >= S, port0 >= S, Signal()
        m.d.comb += [hw.addr.eq(addr - S), hw.data.eq(data), hw.en.eq(en & w_hi),
                     wr.en.eq(en & ~w_hi), hr.addr.eq(port0 - S)]
        m.d.sync += was_hi.eq(r_hi)
        with m.If(was_hi):
            m.d.comb += self.r_data(0).eq(hr.data)
            if self.xfer:
                m.d.comb += self.x_rdata.eq(hr.data)
        for k in range(1, self.reads):
            r_hi_k, was_k = self.r_addr(k) >= S, Signal(name=f"was_hi{k}")
            m.d.sync += was_k.eq(r_hi_k)
            with m.If(was_k):
                m.d.comb += self.r_data(k).eq(0)

    def _xfer_write(self, m, wr, lb):
        """The RAM's one write port takes ``w_*`` or else ``x_*`` (a group of byte lanes
        in a wide memory)."""
        W, B = self.wide, self.word_bits
        w_sel = self.w_en | ~self.x_en
        m.d.comb += wr.addr.eq(Mux(w_sel, self.w_addr, self.x_addr) >> lb)
        if W > 1:
            per = XFER_BITS // B
            g = per.bit_length() - 1
            m.d.comb += [
                wr.data.eq(Mux(w_sel, self.w_data.replicate(W),
                               self.x_data.replicate(W // per))),
                wr.en.eq(Mux(self.w_en, 1 << self.w_addr[:lb],
                             Mux(self.x_en, ((1 << per) - 1) << (self.x_addr[g:lb] * per), 0))),
            ]
        else:
            m.d.comb += [wr.data.eq(Mux(w_sel, self.w_data, self.x_data[:B])),
                         wr.en.eq(self.w_en | self.x_en)]
