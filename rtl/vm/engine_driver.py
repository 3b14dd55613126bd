"""The VM's side of the matvec engine: activation writes, MATVEC commands, and the
results taken apart into one accumulator per beat (the VM writes them into VMEM)."""

from amaranth import Array, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .engine_port import EngineSignature


class EngineDriver(wiring.Component):
    """Drives a :class:`~rtl.matvec_engine.MatvecEngine` for the VM.

    ``act_*``: one int8 activation ``act_data`` at element ``act_index`` per cycle when
    ``act_en`` (byte ``index % cols`` of word ``index // cols``, as the engine reads them).
    ``start``: a MATVEC command (base, m, k), passed to the engine. ``res``: its results,
    row by row (``index`` from 0, ``last`` on row ``m - 1``), one per beat straight out of
    the engine's row tiles; back-pressure on ``res`` holds the tile, which the engine's
    credits turn into a paused sequencer (nothing is lost). A command with ``m = 0`` or
    ``k = 0`` gives no results (the engine's own rule).

    Parameters
    ----------
    config : EngineConfig
    """

    def __init__(self, config):
        self.config = config
        eng = EngineSignature(config)
        cmd = eng.members["cmd"].signature.members["payload"].shape
        super().__init__({
            "engine": Out(eng),
            "act_index": In(16), "act_data": In(8), "act_en": In(1),
            "start": In(stream.Signature(cmd)),
            "res": Out(stream.Signature(data.StructLayout({
                "index": 16, "value": signed(config.acc_bits), "last": 1}))),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        C = cfg.cols
        eng = self.engine

        # activations: element index -> (word, byte lane)
        if C & (C - 1) == 0:
            lb = (C - 1).bit_length()
            word, lane = self.act_index >> lb, (self.act_index[:lb] if lb else 0)
        else:
            word, lane = self.act_index // C, self.act_index % C
        m.d.comb += [eng.acts.addr.eq(word), eng.acts.data.eq(self.act_data.replicate(C))]
        with m.If(self.act_en):
            m.d.comb += eng.acts.en.eq(1 << lane)

        m.d.comb += [eng.cmd.payload.eq(self.start.payload), eng.cmd.valid.eq(self.start.valid),
                     self.start.ready.eq(eng.cmd.ready)]

        # results: lane `col` of the tile at the engine's output, one per beat
        row = Signal(16)
        col = Signal(range(cfg.rows + 1))
        tile = eng.result.payload
        end_of_tile = col == tile.count - 1
        m.d.comb += [self.res.valid.eq(eng.result.valid),
                     self.res.payload.index.eq(row + col),
                     self.res.payload.value.eq(Array(tile.values[j] for j in range(cfg.rows))[col]),
                     self.res.payload.last.eq(tile.last & end_of_tile),
                     eng.result.ready.eq(self.res.ready & end_of_tile)]
        with m.If(self.res.valid & self.res.ready):
            m.d.sync += col.eq(col + 1)
            with m.If(end_of_tile):
                m.d.sync += [col.eq(0), row.eq(row + tile.count)]
                with m.If(tile.last):
                    m.d.sync += row.eq(0)
        return m
