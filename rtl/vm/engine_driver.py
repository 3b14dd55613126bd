"""The VM's side of the matvec engine: activation writes, MATVEC commands, and the
results memory the VM reads the accumulators from (the RES space)."""

from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..results_memory import ResultsMemory
from .engine_port import EngineSignature


class EngineDriver(wiring.Component):
    """Drives a :class:`~rtl.matvec_engine.MatvecEngine` for the VM.

    ``act``: one int8 activation ``data`` at element ``index`` per cycle when ``en``
    (byte ``index % cols`` of word ``index // cols``, as the engine reads them).
    ``start``: a MATVEC (base, m, k); its row tiles are written into a results memory of
    ``max_m`` accumulators as they come (the engine is never held up), and ``done`` pulses
    the cycle after the last one is written. ``res_addr``/``res_data``: read accumulator
    ``res_addr``, valid one cycle later.

    Parameters
    ----------
    config : EngineConfig
    """

    def __init__(self, config):
        self.config = config
        eng = EngineSignature(config)
        self.max_m = config.max_m
        cmd = eng.members["cmd"].signature.members["payload"].shape
        super().__init__({
            "engine": Out(eng),
            "act_index": In(16), "act_data": In(8), "act_en": In(1),
            "start": In(stream.Signature(cmd)),
            "busy": Out(1), "done": Out(1),
            "res_addr": In(max(1, (config.max_m - 1).bit_length())),
            "res_data": Out(signed(config.acc_bits)),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        C = cfg.cols
        m.submodules.results = results = ResultsMemory(cfg.rows, cfg.max_m, cfg.acc_bits)
        eng = self.engine

        # activations: element index -> (word, byte lane)
        if C & (C - 1) == 0:
            lb = (C - 1).bit_length()
            word, lane = self.act_index >> lb, self.act_index[:lb] if lb else 0
        else:
            word, lane = self.act_index // C, self.act_index % C
        m.d.comb += [eng.acts.addr.eq(word), eng.acts.data.eq(self.act_data.replicate(C)),
                     eng.acts.en.eq(0)]
        with m.If(self.act_en):
            m.d.comb += eng.acts.en.eq(1 << lane)

        # commands and results
        row = Signal(17)
        running = Signal()
        m.d.comb += [eng.cmd.payload.eq(self.start.payload), eng.cmd.valid.eq(self.start.valid & ~running),
                     self.start.ready.eq(eng.cmd.ready & ~running), self.busy.eq(running),
                     eng.result.ready.eq(1)]
        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [row.eq(0), running.eq((self.start.payload.m != 0) & (self.start.payload.k != 0))]
        m.d.comb += [results.write.row.eq(row), results.write.en.eq(eng.result.valid & running),
                     results.write.data.eq(eng.result.payload.values),
                     results.write.count.eq(eng.result.payload.count)]
        m.d.sync += self.done.eq(0)
        with m.If(self.start.valid & self.start.ready):
            empty = (self.start.payload.m == 0) | (self.start.payload.k == 0)
            m.d.sync += [row.eq(0), running.eq(~empty), self.done.eq(empty)]
        with m.If(eng.result.valid & running):
            m.d.sync += row.eq(row + eng.result.payload.count)
            with m.If(eng.result.payload.last):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        m.d.comb += [results.read.addr.eq(self.res_addr), self.res_data.eq(results.read.data)]
        return m
