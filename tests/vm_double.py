"""A stand-in vector machine with the real one's ports (load, peek_req/peek, run/done),
for testing the device's version 3 command path without the real machine.

Its memory spaces are plain memories; its "program" is trivial and stated in
:func:`expected_run`: after each position ``p`` from the last fed one on, it writes
``TOKENS[p+1] = TOKENS[p] + top_k + 1``; it reports ``7`` cycles a position and the state
``state ^ inv_t_m ^ (inv_t_e << 16)``; a fed first id of 0xFFFF is an error (status 3,
err_pc 0x1234, err_pos 0xBEEF).
"""

from dataclasses import dataclass

from amaranth import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.vm.layouts import LOAD_DATA_BITS, load_layout, peek_layout, result_layout, run_layout
from rtl.vm.spaces import VmSpaces

TOKENS, WIDE, NARROW, READ_ONLY = 0, 3, 1, 9
SPACES = {TOKENS: (2, 40, True), NARROW: (5, 16, True), WIDE: (8, 8, True), READ_ONLY: (4, 4, False)}
SPACE_BITS = 4
RUN_END = 40
ERROR_CODE = 3

ERR_PC, ERR_POS = 0x1234, 0xBEEF


@dataclass(frozen=True)
class DoubleLimits:
    """What INFO reports for the double (the real machine reports isa's DeviceLimits)."""
    context: int = RUN_END - 1
    vocab: int = 300


def expected_run(tokens, pos0, n_feed, n_new, top_k, state, inv_t_m, inv_t_e):
    """The double's run on a dict ``tokens`` (updated); returns (error, cycles, state)."""
    if tokens.get(pos0, 0) == 0xFFFF:
        return ERROR_CODE, 0, 0
    for p in range(pos0 + n_feed - 1, pos0 + n_feed + n_new - 1):
        tokens[p + 1] = (tokens.get(p, 0) + top_k + 1) & 0xFFFF
    return 0, 7 * (n_feed + n_new - 1), (state ^ inv_t_m ^ ((inv_t_e & 0xFFFF) << 16))


class VmDouble(wiring.Component):
    def __init__(self, limits):
        self.limits = limits
        self.vm_spaces = VmSpaces(SPACES, TOKENS, RUN_END, SPACE_BITS)
        super().__init__({
            "load": In(stream.Signature(load_layout(SPACE_BITS))),
            "peek_req": In(stream.Signature(peek_layout(SPACE_BITS))),
            "peek": Out(stream.Signature(LOAD_DATA_BITS)),
            "run": In(stream.Signature(run_layout())),
            "done": Out(stream.Signature(result_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        mems = {}
        for sid, (nbytes, depth, _) in SPACES.items():
            mem = mems[sid] = memory.Memory(shape=8 * nbytes, depth=depth, init=[])
            m.submodules[f"mem{sid}"] = mem
        wports = {sid: mem.write_port() for sid, mem in mems.items()}
        rports = {sid: mem.read_port() for sid, mem in mems.items()}
        par = Signal(run_layout())
        p, last = Signal(17), Signal(17)
        err = Signal(8)
        cycles = Signal(32)
        space = Signal(SPACE_BITS)
        for sid in SPACES:
            m.d.comb += wports[sid].data.eq(self.load.payload.data),
            m.d.comb += wports[sid].addr.eq(self.load.payload.addr)
            m.d.comb += rports[sid].addr.eq(self.peek_req.payload.addr)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.load.ready.eq(1), self.peek_req.ready.eq(1), self.run.ready.eq(1)]
                with m.If(self.load.valid):
                    for sid in SPACES:
                        with m.If(self.load.payload.space == sid):
                            m.d.comb += wports[sid].en.eq(1)
                with m.Elif(self.peek_req.valid):
                    m.d.sync += space.eq(self.peek_req.payload.space)
                    m.next = "PEEK"
                with m.Elif(self.run.valid):
                    pl = self.run.payload
                    m.d.sync += [par.eq(pl), p.eq(pl.pos0), last.eq(pl.pos0 + pl.n_feed + pl.n_new - 1),
                                 cycles.eq(0), err.eq(0)]
                    m.next = "FIRST"
            with m.State("PEEK"):
                for sid in SPACES:
                    with m.If(space == sid):
                        m.d.comb += self.peek.payload.eq(rports[sid].data)
                m.d.comb += self.peek.valid.eq(1)
                with m.If(self.peek.ready):
                    m.next = "IDLE"
            # the first fed id decides the error; then step through the positions
            with m.State("FIRST"):
                m.d.comb += rports[TOKENS].addr.eq(par.pos0)
                m.next = "FIRST_CHECK"
            with m.State("FIRST_CHECK"):
                with m.If(rports[TOKENS].data == 0xFFFF):
                    m.d.sync += err.eq(ERROR_CODE)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += p.eq(par.pos0 + par.n_feed - 1)
                    m.next = "READ"
            with m.State("READ"):
                with m.If(p >= last):
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += rports[TOKENS].addr.eq(p)
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [wports[TOKENS].addr.eq(p + 1), wports[TOKENS].en.eq(1),
                             wports[TOKENS].data.eq(rports[TOKENS].data + par.top_k + 1)]
                m.d.sync += p.eq(p + 1)
                m.next = "READ"
            with m.State("DONE"):
                m.d.comb += [self.done.valid.eq(1), self.done.payload.status.eq(err),
                             self.done.payload.err_pc.eq(Mux(err != 0, ERR_PC, 0)),
                             self.done.payload.err_pos.eq(Mux(err != 0, ERR_POS, 0)),
                             self.done.payload.cycles.eq(Mux(err != 0, 0, 7 * (par.n_feed + par.n_new - 1))),
                             self.done.payload.state.eq(Mux(err != 0, 0, par.state ^ par.inv_t_m ^
                                                             (par.inv_t_e.as_unsigned() << 16)))]
                with m.If(self.done.ready):
                    m.next = "IDLE"
        return m
