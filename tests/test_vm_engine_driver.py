"""The VM's engine driver (rtl/vm/engine_driver.py) on a real MatvecEngine: activations
written element by element, a MATVEC, every accumulator taken one per beat (with
back-pressure) == the engine's golden model."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from rtl.matvec_engine import MatvecEngine
from rtl.vm.engine_driver import EngineDriver
from ternary_core.engine_config import EngineConfig
from ternary_core.golden import matvec
from tests.amaranth_helpers import packed_words, write_words


class Rig(wiring.Component):
    def __init__(self, cfg):
        self.eng = MatvecEngine(cfg)
        self.drv = EngineDriver(cfg)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.eng, m.submodules.drv = self.eng, self.drv
        for name in ("cmd", "acts"):
            wiring.connect(m, getattr(self.drv.engine, name),
                           getattr(self.eng, name))
        wiring.connect(m, self.eng.result, self.drv.engine.result)
        m.d.comb += self.drv.engine.busy.eq(self.eng.busy)
        return m


@pytest.mark.parametrize("rows,cols", [(4, 8), (4, 5)])
def test_driver_streams_every_result_of_two_matvecs_under_back_pressure(rows, cols, rng):
    cfg = EngineConfig(rows=rows, cols=cols, max_m=64, max_k=64, weight_words=512)
    rig = Rig(cfg)
    layers = []
    base = 0
    for m_, k_ in ((37, 29), (rows, 1)):
        w = rng.integers(-1, 2, (m_, k_))
        x = rng.integers(-127, 128, k_)
        x[0] = -127
        layers.append((base, w, x))
        base += len(packed_words(cfg.layout, w))
    got = []

    async def tb(ctx):
        drv = rig.drv
        for b, w, _ in layers:
            await write_words(ctx, rig.eng.weights, b, packed_words(cfg.layout, w))
        for b, w, x in layers:
            for i, v in enumerate(x):
                ctx.set(drv.act_index, i)
                ctx.set(drv.act_data, int(v) & 0xFF)
                ctx.set(drv.act_en, 1)
                await ctx.tick()
            ctx.set(drv.act_en, 0)
            ctx.set(drv.start.payload, {"base": b, "m": w.shape[0], "k": w.shape[1]})
            ctx.set(drv.start.valid, 1)
            await ctx.tick().until(drv.start.ready)
            ctx.set(drv.start.valid, 0)
            out = []
            while True:       # random back-pressure on the results
                ready = rng.random() < 0.6
                ctx.set(drv.res.ready, ready)
                _, _, valid, p = await ctx.tick().sample(drv.res.valid, drv.res.payload)
                if valid and ready:
                    assert p.index == len(out)
                    out.append(p.value)
                    if p.last:
                        break
            ctx.set(drv.res.ready, 0)
            got.append(out)

    sim = Simulator(rig)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for (b, w, x), out in zip(layers, got):
        assert out == [int(v) for v in matvec(w, x)]
