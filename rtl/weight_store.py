"""The weight store: a single-port RAM of packed words (one tile each).

Single-port because the iCE40UP5K's SPRAMs are; the engine reads it while a matvec
runs and the command engine writes or reads it back while the engine is idle.
"""

from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


class WeightBusSignature(wiring.Signature):
    """A single-port RAM, seen from the user: ``addr`` and ``wmask`` (a byte-enable per
    byte of ``wdata``; zero for a read) in, ``rdata`` out. One access a cycle, no
    back-pressure; how many cycles ``rdata`` follows ``addr`` is the component's:
    :class:`WeightStore` 1, :class:`~rtl.matvec_engine.MatvecEngine`
    :attr:`~rtl.matvec_engine.MatvecEngine.weight_read_latency`."""

    def __init__(self, addr_bits, word_bytes):
        super().__init__({
            "addr": Out(unsigned(addr_bits)),
            "wdata": Out(unsigned(8 * word_bytes)),
            "wmask": Out(unsigned(word_bytes)),
            "rdata": In(unsigned(8 * word_bytes)),
        })


class WeightWriteSignature(wiring.Signature):
    """Whole-word writes into the store beside the engine's reads (the vector machine's
    XFER IN to WGT, which fills one half of the store while a MATVEC reads the other),
    seen from the writer: ``addr``, ``data`` and ``en`` out, no back-pressure."""

    def __init__(self, addr_bits, word_bytes):
        super().__init__({
            "addr": Out(unsigned(addr_bits)),
            "data": Out(unsigned(8 * word_bytes)),
            "en": Out(1),
        })


IMPLS = ("generic", "sliced", "packed", "ice40_spram")
WORD_WRITE_IMPLS = ("generic", "packed")


class WeightStore(wiring.Component):
    """``depth`` words of ``word_bytes`` bytes; read latency 1 cycle.

    ``impl="generic"`` uses ``lib.memory.Memory`` (block RAM on ECP5, and what Verilator
    simulates); ``impl="ice40_spram"`` instantiates SB_SPRAM256KA blocks side by side
    (16 bits each) and stacked (16K words each). ``impl="sliced"`` is ``generic`` cut
    into one memory per few bits of the word, each as deep as the store (4 bits up to
    4096 words: an ECP5 DP16KD in 4096 x 4): every output bit then comes from a single
    block RAM, with no bank multiplexer between the RAM and the engine's register.
    ``impl="packed"`` is ``generic`` for block RAM as the scarce resource: no byte
    enables, so every data bit of a DP16KD holds a weight bit (a byte enable per 9 bits
    leaves one in nine empty): the shipped model's 2,304 words are 72 DP16KD, not 80.
    A byte write writes its whole word from a staging register: the bytes written since
    the word's byte 0, the new one, and zeros above it (a write that ends in the middle
    of a word leaves the rest of that word zero). (Banks of 2,048 + 256 words, the
    obvious packing, make Yosys 0.70's ABC9 fail an assertion.)

    ``word_writes`` (``generic`` and ``packed``) adds ``wgt``
    (:class:`WeightWriteSignature`): whole-word writes at an address of their own, beside
    the reads at ``bus.addr`` (the block RAM is simple dual-port). A ``wgt`` write takes
    the write port from a ``bus`` write in the same cycle: the bus writes while the vector
    machine is idle, ``wgt`` while it runs. Without it, the store is as before.
    """

    def __init__(self, depth, word_bytes, impl="generic", *, word_writes=False):
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, not {impl!r}")
        if word_writes and impl not in WORD_WRITE_IMPLS:
            raise ValueError(f"word_writes needs impl {' or '.join(map(repr, WORD_WRITE_IMPLS))} "
                             f"(one block RAM with a write port of its own), not {impl!r}")
        if impl == "ice40_spram":
            if (8 * word_bytes) % 16:
                raise ValueError("ice40_spram needs a word width that is a multiple of 16 bits")
            if -(-depth // 16384) * (8 * word_bytes // 16) > 4:
                raise ValueError(f"ice40_spram: {depth} words of {8 * word_bytes} bits need more "
                                 f"than the iCE40UP5K's four 16K x 16 SPRAMs")
        self.depth, self.word_bytes, self.impl = depth, word_bytes, impl
        self.addr_bits = max(1, (depth - 1).bit_length())
        ports = {"bus": In(WeightBusSignature(self.addr_bits, word_bytes))}
        if word_writes:
            ports["wgt"] = In(WeightWriteSignature(self.addr_bits, word_bytes))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        if self.impl == "sliced":
            self._elaborate_sliced(m)
        elif self.impl == "packed":
            self._elaborate_packed(m)
        elif self.impl == "generic":
            m.submodules.mem = mem = memory.Memory(shape=unsigned(8 * self.word_bytes),
                                                   depth=self.depth, init=[])
            rd = mem.read_port(transparent_for=())
            wr = mem.write_port(granularity=8)
            m.d.comb += [rd.addr.eq(self.bus.addr), wr.addr.eq(self.bus.addr),
                         wr.data.eq(self.bus.wdata), wr.en.eq(self.bus.wmask),
                         self.bus.rdata.eq(rd.data)]
            self._word_writes(m, wr, -1)
        else:
            self._elaborate_spram(m)
        return m

    def _elaborate_sliced(self, m):
        from amaranth import Cat

        bits = 4 if self.depth <= 4096 else 2 if self.depth <= 8192 else 1
        outs = []
        for i in range(8 * self.word_bytes // bits):
            mem = memory.Memory(shape=unsigned(bits), depth=self.depth, init=[])
            m.submodules[f"slice{i}"] = mem
            rd, wr = mem.read_port(transparent_for=()), mem.write_port()
            lo = i * bits
            m.d.comb += [rd.addr.eq(self.bus.addr), wr.addr.eq(self.bus.addr),
                         wr.data.eq(self.bus.wdata[lo: lo + bits]), wr.en.eq(self.bus.wmask[lo // 8])]
            outs.append(rd.data)
        m.d.comb += self.bus.rdata.eq(Cat(*outs))

    def _elaborate_packed(self, m):
        from amaranth import Mux, Signal

        nb = self.word_bytes
        stage, word = Signal(8 * nb), Signal(8 * nb)
        first = self.bus.wmask[0]
        for i in range(nb):
            sl = slice(8 * i, 8 * i + 8)
            m.d.comb += word[sl].eq(Mux(self.bus.wmask[i], self.bus.wdata[sl],
                                        Mux(first, 0, stage[sl])))
        write = self.bus.wmask.any()
        with m.If(write):
            m.d.sync += stage.eq(word)
        m.submodules.mem = mem = memory.Memory(shape=unsigned(8 * nb), depth=self.depth, init=[])
        rd, wr = mem.read_port(transparent_for=()), mem.write_port()
        m.d.comb += [rd.addr.eq(self.bus.addr), wr.addr.eq(self.bus.addr), wr.data.eq(word),
                     wr.en.eq(write), self.bus.rdata.eq(rd.data)]
        self._word_writes(m, wr, 1)

    def _word_writes(self, m, wr, enable):
        """With ``word_writes``, ``wgt`` takes the write port ``wr`` when it writes
        (``enable``: the port's enable for a whole word)."""
        if "wgt" not in self.signature.members:
            return
        with m.If(self.wgt.en):
            m.d.comb += [wr.addr.eq(self.wgt.addr), wr.data.eq(self.wgt.data), wr.en.eq(enable)]

    def _elaborate_spram(self, m):
        from amaranth import Cat, Instance, Signal

        lanes = 8 * self.word_bytes // 16
        banks = -(-self.depth // 16384)
        bank = Signal(range(max(2, banks)))
        bank_q = Signal.like(bank)
        m.d.comb += bank.eq(self.bus.addr >> 14 if banks > 1 else 0)
        m.d.sync += bank_q.eq(bank)
        outs = []
        for b in range(banks):
            lane_outs = []
            for ln in range(lanes):
                dout = Signal(16, name=f"spram_b{b}_l{ln}_dout")
                mask = self.bus.wmask[2 * ln: 2 * ln + 2]
                m.submodules[f"spram_b{b}_l{ln}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=self.bus.addr[:14], i_DATAIN=self.bus.wdata[16 * ln: 16 * ln + 16],
                    # MASKWREN is per nibble: each byte enable drives two nibbles.
                    i_MASKWREN=Cat(mask[0], mask[0], mask[1], mask[1]),
                    i_WREN=(mask != 0) & (bank == b), i_CHIPSELECT=1, i_CLOCK=self._clock(),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=dout)
                lane_outs.append(dout)
            outs.append(Cat(*lane_outs))
        with m.Switch(bank_q):
            for b, o in enumerate(outs):
                with m.Case(b):
                    m.d.comb += self.bus.rdata.eq(o)

    @staticmethod
    def _clock():
        from amaranth import ClockSignal
        return ClockSignal("sync")
