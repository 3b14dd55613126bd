"""A matvec engine fed from SDRAM: each command streams its layer in one burst.

:class:`StreamedMatvec` takes a command (the layer's first SDRAM word, M, K), asks a
:class:`~rtl.sdram.controller.BurstReader` for the layer's words in one request, gathers
them into the engine's tile words and feeds the engine's ``wstream``
(:class:`~rtl.matvec_engine.MatvecEngine` with ``weight_source="stream"``). The layer
sits in SDRAM in the engine's native layout (:meth:`ternary_core.formats.native.TileLayout.pack`),
each tile word split into SDRAM words lowest bits first (:func:`sdram_words`).

The engine's sequencer waits for each word, so a matvec takes the longer of the memory's
time and the array's: ``words * n`` SDRAM words at the memory's rate when the array is
faster (a 16-trit array matches the half-rate SDR port's 32 bits a cycle at 2 bits a
trit). The next command's burst is asked for as soon as the engine takes the command,
while the last results are still in the pipeline, so back-to-back layers stream without
a gap but the controller's read latency.
"""

import numpy as np
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.matvec_engine import MatvecEngine, result_layout

from .controller import burst_layout


def command_layout(address_width):
    return data.StructLayout({"addr": address_width, "m": 16, "k": 16})


def sdram_words(config, w, data_width):
    """The SDRAM image of a ternary ``M x K`` layer for an engine ``config``: its native
    tile words, each split into ``data_width``-bit SDRAM words, lowest bits first."""
    per = 8 * config.word_bytes // data_width
    tiles = config.layout.pack(w).reshape(-1, config.word_bytes)
    parts = tiles.reshape(len(tiles), per, data_width // 8)
    weights = 1 << (8 * np.arange(data_width // 8, dtype=object))
    return [int(sum(int(b) * int(wt) for b, wt in zip(part, weights))) for part in parts.reshape(-1, data_width // 8)]


class StreamedMatvec(wiring.Component):
    """Parameters
    ----------
    config : EngineConfig of the engine (its ``weight_words`` unused).
    address_width, data_width : the SDRAM port's (``data_width`` must divide the tile word).
    count_width : width of a burst's word count (the largest layer is ``2**count_width - 1``
        SDRAM words).

    Ports
    -----
    cmd : In(stream of command_layout) — taken once the burst is asked for and the engine
        has the command.
    result : Out(stream) — the engine's row tiles.
    acts : the engine's activation write port.
    read : Out(stream of burst_layout) — to a BurstReader's ``req``.
    words : In(stream of data_width) — from that BurstReader's ``o``.
    """

    def __init__(self, config, *, address_width, data_width, count_width=24):
        word_bits = 8 * config.word_bytes
        if word_bits % data_width:
            raise ValueError(f"the SDRAM word ({data_width} bits) must divide the engine's tile "
                             f"word ({word_bits} bits)")
        self.config, self.per_tile = config, word_bits // data_width
        self.engine = MatvecEngine(config, weight_source="stream")
        super().__init__({
            "cmd": In(stream.Signature(command_layout(address_width))),
            "result": Out(stream.Signature(result_layout(config.rows, config.acc_bits))),
            "acts": Out(self.engine.acts.signature),
            "read": Out(stream.Signature(burst_layout(address_width, count_width))),
            "words": In(stream.Signature(data_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.engine = eng = self.engine
        wiring.connect(m, eng.result, wiring.flipped(self.result))
        wiring.connect(m, wiring.flipped(self.acts), eng.acts)

        # command: the burst request and the engine's command, each taken in its own time
        p = self.cmd.payload
        row_tiles = (p.m + cfg.rows - 1) // cfg.rows
        col_tiles = (p.k + cfg.cols - 1) // cfg.cols
        read_sent, engine_sent = Signal(), Signal()
        read_done = read_sent | (self.read.valid & self.read.ready)
        engine_done = engine_sent | (eng.cmd.valid & eng.cmd.ready)
        m.d.comb += [
            self.read.valid.eq(self.cmd.valid & ~read_sent & (p.m != 0) & (p.k != 0)),
            self.read.payload.addr.eq(p.addr),
            self.read.payload.count.eq(row_tiles * col_tiles * self.per_tile),
            eng.cmd.valid.eq(self.cmd.valid & ~engine_sent),
            eng.cmd.payload.m.eq(p.m), eng.cmd.payload.k.eq(p.k), eng.cmd.payload.base.eq(0),
            self.cmd.ready.eq(self.cmd.valid & engine_done & (read_done | (p.m == 0) | (p.k == 0))),
            self.busy.eq(eng.busy | self.cmd.valid),
        ]
        with m.If(self.cmd.ready):
            m.d.sync += [read_sent.eq(0), engine_sent.eq(0)]
        with m.Else():
            m.d.sync += [read_sent.eq(read_done), engine_sent.eq(engine_done)]

        # SDRAM words -> tile words, lowest bits first
        n = self.per_tile
        if n == 1:
            wiring.connect(m, wiring.flipped(self.words), eng.wstream)
        else:
            width = len(self.words.payload)
            held = Signal(width * (n - 1))
            have = Signal(range(n))
            full = have == n - 1
            m.d.comb += [
                eng.wstream.payload.eq(Cat(held, self.words.payload)),
                eng.wstream.valid.eq(self.words.valid & full),
                self.words.ready.eq(~full | eng.wstream.ready),
            ]
            with m.If(self.words.valid & self.words.ready):
                with m.If(full):
                    m.d.sync += have.eq(0)
                with m.Else():
                    m.d.sync += [have.eq(have + 1),
                                 held.eq(Cat(held[width:], self.words.payload))]
        return m


class SdramMatvec(wiring.Component):
    """:class:`StreamedMatvec` on an SDRAM core (:class:`~rtl.sdram.controller.SdramStreams`):
    the layers are written through ``write_req`` / ``write_data`` and multiplied through
    ``cmd`` / ``acts`` / ``result``. The unit the simulated board's tests drive."""

    def __init__(self, config, core, *, count_width=24):
        from .controller import SdramStreams

        g = core.geometry
        self.streams = SdramStreams(core, count_width=count_width)
        self.matvec = StreamedMatvec(config, address_width=g.address_width, data_width=g.data_width,
                                     count_width=count_width)
        super().__init__({
            "write_req": In(stream.Signature(burst_layout(g.address_width, count_width))),
            "write_data": In(stream.Signature(g.data_width)),
            "cmd": In(self.matvec.cmd.signature.flip()),
            "result": Out(self.matvec.result.signature),
            "acts": Out(self.matvec.acts.signature),
            "init_done": Out(1),
            "timing_violation": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.streams = s = self.streams
        m.submodules.matvec = mv = self.matvec
        wiring.connect(m, wiring.flipped(self.write_req), s.write_req)
        wiring.connect(m, wiring.flipped(self.write_data), s.write_data)
        wiring.connect(m, mv.read, s.read_req)
        wiring.connect(m, s.read_data, mv.words)
        wiring.connect(m, wiring.flipped(self.cmd), mv.cmd)
        wiring.connect(m, mv.result, wiring.flipped(self.result))
        wiring.connect(m, wiring.flipped(self.acts), mv.acts)
        m.d.comb += [self.init_done.eq(s.init_done), self.timing_violation.eq(s.timing_violation)]
        return m
