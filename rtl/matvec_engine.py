"""The matvec engine: weight store, activation buffer, tile sequencer, decoder, MAC
array and accumulators, as one stream pipeline."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.engine_config import EngineConfig

from .decoder import TRIT, WeightDecoder
from .mac_array import TernaryMacArray, sum_bits
from .weight_store import WeightBusSignature, WeightStore


def command_layout(addr_bits):
    """MATVEC command: base word address of the layer, output rows M, inputs K."""
    return data.StructLayout({"base": unsigned(addr_bits), "m": unsigned(16), "k": unsigned(16)})


def result_layout(acc_bits):
    return data.StructLayout({"value": signed(acc_bits), "last": unsigned(1)})


def _register_stage(m, src, dst, payload):
    """A pipeline register from stream ``src`` to ``dst``; back-pressure passes through."""
    m.d.comb += src.ready.eq(~dst.valid | dst.ready)
    with m.If(src.ready):
        m.d.sync += [dst.valid.eq(src.valid), dst.payload.eq(payload)]


class MatvecEngine(wiring.Component):
    """``acc = W~ . x`` for one stored layer, one result per output row.

    The layer sits in the weight store in the native layout (one tile per word, see
    :mod:`ternary_core.native`) from word ``base``; activations sit in the activation
    buffer (``cols`` bytes per word, value ``k`` at byte ``k % cols`` of word
    ``k // cols``). A command walks the ``ceil(M/rows) x ceil(K/cols)`` tiles, one per
    cycle, through five stages::

        sequencer -> fetch (RAM read) -> decode -> MAC array -> accumulate -> serializer

    The serializer drains a finished row tile (``rows`` results, one per cycle) while
    the next tile accumulates, so a matvec with ``ceil(K/cols) >= rows + 4`` takes
    ``ceil(M/rows)*ceil(K/cols)`` cycles plus about 6.

    Parameters
    ----------
    config : EngineConfig
    weight_store : "generic" or "ice40_spram" (see :class:`WeightStore`)
    base3_impl : "arith" or "rom" (see :class:`WeightDecoder`)

    Ports
    -----
    cmd : In(stream of command_layout)
        Accepted only when idle. A command with M = 0 or K = 0 does nothing.
    result : Out(stream of result_layout)
        ``value`` is the signed accumulator; ``last`` marks the final row.
    weights : In(WeightBusSignature)
        Access to the weight store for the command engine; honoured only while idle.
    acts : Out(WritePort.Signature)
        Byte-granular writes to the activation buffer (the engine *is* this port).
    busy : Out(1)
    cycles : Out(32)
        Cycles of the last matvec, from the command handshake to the last result's.
    """

    def __init__(self, config, *, weight_store="generic", base3_impl="arith"):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {config!r}")
        self.config = config
        self.weight_store_impl = weight_store
        self.base3_impl = base3_impl
        self.addr_bits = max(1, (config.weight_words - 1).bit_length())
        self.act_addr_bits = max(1, (config.act_words - 1).bit_length())
        super().__init__({
            "cmd": In(stream.Signature(command_layout(self.addr_bits))),
            "result": Out(stream.Signature(result_layout(config.acc_bits))),
            "weights": In(WeightBusSignature(self.addr_bits, config.word_bytes)),
            "acts": Out(memory.WritePort.Signature(addr_width=self.act_addr_bits,
                                                   shape=unsigned(8 * config.cols), granularity=8)),
            "busy": Out(1),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        m = Module()

        m.submodules.store = store = WeightStore(cfg.weight_words, cfg.word_bytes, self.weight_store_impl)
        m.submodules.act_mem = act_mem = memory.Memory(shape=unsigned(8 * C), depth=cfg.act_words, init=[])
        act_rd = act_mem.read_port(transparent_for=())
        act_wr = act_mem.write_port(granularity=8)
        m.d.comb += [act_wr.addr.eq(self.acts.addr), act_wr.data.eq(self.acts.data),
                     act_wr.en.eq(self.acts.en)]
        m.submodules.decoder = decoder = WeightDecoder(cfg.layout, self.base3_impl)
        m.submodules.array = array = TernaryMacArray(R, C)

        meta = {"first": 1, "last": 1, "final": 1, "nrows": range(R + 1)}
        beat = stream.Signature(data.StructLayout(
            {"waddr": self.addr_bits, "aaddr": self.act_addr_bits, **meta})).create()
        fetched = stream.Signature(data.StructLayout(
            {"waddr": self.addr_bits, "aaddr": self.act_addr_bits, **meta})).create()
        decoded = stream.Signature(data.StructLayout({
            "trits": data.ArrayLayout(TRIT, R * C), "acts": data.ArrayLayout(signed(8), C), **meta})).create()
        summed = stream.Signature(data.StructLayout({
            "sums": data.ArrayLayout(signed(sum_bits(C)), R), **meta})).create()

        # --- sequencer: walks row tiles, and column tiles within each -----------------
        CW = 17  # counters reach max M or K (16 bits) plus one tile
        running = Signal()
        m_rows, k_cols = Signal(CW), Signal(CW)
        row, col = Signal(CW), Signal(CW)
        waddr, aaddr = Signal(self.addr_bits), Signal(self.act_addr_bits)
        busy = Signal()
        m.d.comb += [self.busy.eq(busy), self.cmd.ready.eq(~busy)]
        with m.If(self.cmd.valid & ~busy):
            p = self.cmd.payload
            start = p.m.any() & p.k.any()
            m.d.sync += [m_rows.eq(p.m), k_cols.eq(p.k), waddr.eq(p.base), aaddr.eq(0),
                         row.eq(0), col.eq(0), running.eq(start), busy.eq(start)]

        col_next = (col + Const(C, CW))[:CW]
        row_next = (row + Const(R, CW))[:CW]
        last = col_next >= k_cols
        rows_left = (m_rows - row)[:CW]
        m.d.comb += [
            beat.valid.eq(running),
            beat.payload.waddr.eq(waddr), beat.payload.aaddr.eq(aaddr),
            beat.payload.first.eq(~col.any()), beat.payload.last.eq(last),
            beat.payload.final.eq(last & (row_next >= m_rows)),
            beat.payload.nrows.eq(Mux(rows_left >= Const(R, CW), R, rows_left[:len(beat.payload.nrows)])),
        ]
        with m.If(beat.valid & beat.ready):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(last):
                m.d.sync += [col.eq(0), aaddr.eq(0), row.eq(row_next)]
                with m.If(beat.payload.final):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [col.eq(col_next), aaddr.eq(aaddr + 1)]

        # --- fetch: synchronous RAM reads. While stalled, the address of the held beat
        # is presented again, so the RAM output stays that beat's (no read enable needed).
        _register_stage(m, beat, fetched, beat.payload)
        advance = beat.ready
        rd_waddr = Mux(advance, beat.payload.waddr, fetched.payload.waddr)
        m.d.comb += [
            store.bus.addr.eq(Mux(busy, rd_waddr, self.weights.addr)),
            store.bus.wdata.eq(self.weights.wdata),
            store.bus.wmask.eq(Mux(busy, 0, self.weights.wmask)),
            self.weights.rdata.eq(store.bus.rdata),
            act_rd.addr.eq(Mux(advance, beat.payload.aaddr, fetched.payload.aaddr)),
        ]

        # --- decode --------------------------------------------------------------
        m.d.comb += decoder.word.eq(store.bus.rdata)
        dec = Signal(decoded.payload.shape())
        m.d.comb += [dec.trits.eq(decoder.trits), dec.acts.eq(act_rd.data)]
        m.d.comb += [getattr(dec, f).eq(getattr(fetched.payload, f)) for f in meta]
        _register_stage(m, fetched, decoded, dec)

        # --- MAC array ------------------------------------------------------------
        m.d.comb += [array.trits.eq(decoded.payload.trits), array.acts.eq(decoded.payload.acts)]
        summ = Signal(summed.payload.shape())
        m.d.comb += summ.sums.eq(array.sums)
        m.d.comb += [getattr(summ, f).eq(getattr(decoded.payload, f)) for f in meta]
        _register_stage(m, decoded, summed, summ)

        # --- accumulate, then hand a finished row tile to the serializer ------------
        acc = Signal(data.ArrayLayout(signed(cfg.acc_bits), R))
        out_vals = Signal(data.ArrayLayout(signed(cfg.acc_bits), R))
        out_count = Signal(range(R + 1))
        out_final = Signal()
        pop = self.result.valid & self.result.ready
        one = Const(1, len(out_count))
        out_free = ~out_count.any() | ((out_count == one) & self.result.ready)
        s = summed.payload
        m.d.comb += summed.ready.eq(~s.last | out_free)
        new_acc = [Mux(s.first, 0, acc[r]) + s.sums[r] for r in range(R)]

        m.d.comb += [
            self.result.valid.eq(out_count.any()),
            self.result.payload.value.eq(out_vals[0]),
            self.result.payload.last.eq(out_final & (out_count == one)),
        ]
        with m.If(pop):
            m.d.sync += out_count.eq(out_count - 1)
            m.d.sync += [out_vals[r].eq(out_vals[r + 1]) for r in range(R - 1)]
        with m.If(summed.valid & summed.ready):
            with m.If(s.last):
                m.d.sync += [out_vals[r].eq(new_acc[r]) for r in range(R)]
                m.d.sync += [out_count.eq(s.nrows), out_final.eq(s.final)]
            with m.Else():
                m.d.sync += [acc[r].eq(new_acc[r]) for r in range(R)]

        # --- cycle count and end of command --------------------------------------
        count = Signal(32)
        m.d.comb += self.cycles.eq(count)
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += count.eq(1)
        with m.Elif(busy):
            m.d.sync += count.eq(count + 1)
        with m.If(pop & self.result.payload.last):
            m.d.sync += busy.eq(0)
        return m
