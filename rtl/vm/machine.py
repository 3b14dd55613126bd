"""The vector machine (VM): runs the step program of the whole-model device
(docs/device-isa.md; ternary_core/offload/isa.py is the one definition of the encoding)
beside the matvec engine, which it drives."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.engine_config import EngineConfig
from ternary_core.integer.fixed import E_ZERO
from ternary_core.offload import isa
from ternary_core.offload.isa import (Cond, Dyn, DynSrc, MachineStatus as Status, Op, Red, SampleFn, SFn, Space,
                                      SVFn, VFn)

from ..decode.exp2 import Exp2Unit
from ..decode.pipeline import normalize_left
from ..decode.scalar_unit import ScalarOp, ScalarUnit
from ..decode.xorshift import xorshift32_next
from .engine_driver import EngineDriver
from .engine_port import EngineSignature
from .lanes import DotAxpyLanes
from .layouts import field, load_layout, peek_layout, result_layout, run_layout
from .memories import SpaceMemory
from .valu import SH_BITS, V_BITS, clamp_signed, element_value, saturate_dynamic, shift_value

LANES = isa.DOT_LANES
# the memories of the spaces: read ports and words per RAM row (32 for the DOT/AXPY rows)
MEMORIES = {
    Space.VMEM: dict(reads=2), Space.TMEM: dict(reads=2, shared=True),
    Space.EMB: dict(wide=LANES), Space.HEAD: dict(wide=LANES),
    Space.KVK: dict(wide=LANES), Space.KVV: dict(wide=LANES),
    Space.EMBS: dict(lutram=True), Space.HEADS: dict(lutram=True), Space.KVS: {},
    Space.TOKENS: dict(lutram=True), Space.PROG: dict(wide=2), Space.SRINIT: dict(lutram=True),
    Space.CYCLES: dict(lutram=True), Space.PARAM: dict(lutram=True),
}
IR_BITS, SW_BITS = isa.IR_BITS, isa.SW_BITS
SU_EXP_BITS = 16     # the scalar unit's exponents: wider than s12, so leaving s12 is seen
# issue -> operands -> value -> (exp2) -> shift -> saturate -> write, reduce -> sum of squares
VOP_STAGES = 7
VOP_WRITE = 6        # the stage that writes D[i] and reduces (the squares one stage later)


def sext(v, bits, is_signed):
    return v[:bits].as_signed() if is_signed else v[:bits]


class VectorMachine(wiring.Component):
    """Runs the compiled step program of a model once per position (``run``), drives
    the matvec engine for MATVEC, and holds every memory space of the ISA.

    Parameters
    ----------
    limits : isa.DeviceLimits
        Depths of the spaces, the context (BAD_PARAMS check) and the SR count.
    engine_config : EngineConfig
        The matvec engine the ``engine`` port drives.

    Ports
    -----
    load : In(stream of {space, addr, data})
        One word of a space per beat (its low ``word bits`` of ``data``); only while idle.
    peek_req : In(stream of {space, addr}), peek : Out(stream of 64 bits)
        Read-back of one word (zero-extended); only while idle. ACT reads as 0.
    run : In(stream of RUN_PARAMS), done : Out(stream of RUN_RESULT)
        A run (docs/device-isa.md "Run semantics"); ``run`` is taken only while idle and
        ``done`` is offered once at its end (the VM is busy in between).
    engine : Out(EngineSignature)
        The matvec engine's cmd, result, acts and busy.
    busy : Out(1)

    The device top connects ``engine`` member by member to its MatvecEngine (``cmd``,
    ``acts``, ``result``, ``busy``), muxed with the command engine while the VM is idle.

    Timing: an instruction takes 3 cycles of fetch and decode, then its pass: VOP one
    element per cycle plus 9 of drain; SVOP one element per cycle plus the ScalarUnit's 7
    (SMUL2: two passes); SOP 1 cycle (integer, store) or 9 (scalar unit); DOT ``len``
    cycles to load Q, then one 32-byte chunk of a row per cycle plus 6; AXPY per 32
    outputs one cycle per row plus 6, then one cycle per output; MATVEC the engine's
    cycles, its results written into VMEM at one per cycle (a row tile waits in the
    engine while its rows are written); TOPK ``(top_k + 2) * n``.

    What the hardware assumes of a program (the compiler's programs meet it; isa's
    Machine does not check all of it):

    - two operands of one pass in the same space only for VMEM and TMEM (two read
      ports); ROT's A in VMEM or TMEM, its B in another space;
    - a destination equal to A or disjoint from A and B (the pass reads element ``i`` a
      few cycles before it writes element ``i - 6``);
    - scalar inputs canonical (as the ScalarUnit's), SR[0]'s exponent within s12;
    - ATTN (op 9) is not built: it stops the run with BAD_OPCODE, never a wrong token;
    - PROG_END when ``pc`` reaches ``prog_words`` (the memory's end, not the program's).
    """

    def __init__(self, limits, engine_config):
        if not isinstance(limits, isa.DeviceLimits):
            raise TypeError(f"limits must be an isa.DeviceLimits, not {limits!r}")
        if not isinstance(engine_config, EngineConfig):
            raise TypeError(f"engine_config must be an EngineConfig, not {engine_config!r}")
        self.limits, self.engine_config = limits, engine_config
        super().__init__({
            "load": In(stream.Signature(load_layout())),
            "peek_req": In(stream.Signature(peek_layout())),
            "peek": Out(stream.Signature(64)),
            "run": In(stream.Signature(run_layout())),
            "done": Out(stream.Signature(result_layout())),
            "engine": Out(EngineSignature(engine_config)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lim = self.limits

        # --- memories ------------------------------------------------------------------
        mems = {}
        for sp, kw in MEMORIES.items():
            info = isa.SPACES[sp]
            # a shared port takes the write's address: only uploads (VM idle) may write
            assert not (kw.get("shared") and info.writable_by_program), sp
            mems[sp] = SpaceMemory(info.word_bits, lim.depth(sp), name=sp.name, **kw)
            m.submodules[f"mem_{sp.name.lower()}"] = mems[sp]
        m.submodules.sr_file = sr_mem = memory.Memory(shape=unsigned(SW_BITS), depth=isa.SR_COUNT,
                                                      init=[], attrs={"ram_style": "distributed"})
        sr_rd = [sr_mem.read_port(transparent_for=()) for _ in range(2)]
        sr_wr = sr_mem.write_port()
        qbuf_rows = max(1, -(-max(lim.hidden, lim.head_dim, lim.vocab) // LANES))
        m.submodules.qbuf = qmem = memory.Memory(shape=data.ArrayLayout(signed(8), LANES),
                                                 depth=qbuf_rows, init=[])
        # (an ArrayLayout memory counts its write granularity in elements)
        q_rd, q_wr = qmem.read_port(transparent_for=()), qmem.write_port(granularity=1)
        m.submodules.topk_mask = kmem = memory.Memory(shape=1, depth=max(2, lim.vocab), init=[])
        k_rd, k_wr = kmem.read_port(transparent_for=()), kmem.write_port()

        m.submodules.drv = drv = EngineDriver(self.engine_config)
        for name in ("cmd", "acts"):
            wiring.connect(m, getattr(drv.engine, name), wiring.flipped(getattr(self.engine, name)))
        wiring.connect(m, wiring.flipped(self.engine.result), drv.engine.result)
        m.submodules.su = su = ScalarUnit(exp_bits=SU_EXP_BITS, int_bits=IR_BITS)
        m.submodules.exp2 = ex = Exp2Unit(in_bits=32)
        m.submodules.lanes = lanes = DotAxpyLanes(LANES)
        m.d.comb += [su.o.ready.eq(1), ex.o.ready.eq(1)]

        # --- architectural state -------------------------------------------------------
        ir = Array(Signal(signed(IR_BITS), name=f"ir{k}") for k in range(isa.IR_COUNT))
        ins = Signal(isa.INSTR_BITS)
        pc, pos, token = Signal(16), Signal(16), Signal(16)
        gen, sampling = Signal(), Signal()
        prm = Signal(run_layout())
        xs = Signal(32)                              # the xorshift32 state
        status, err_pc, err_pos, n_done = Signal(8), Signal(16), Signal(16), Signal(16)
        total, step_cycles = Signal(32), Signal(32)
        last_pos = Signal(17)
        in_step = Signal()

        # The instruction being decoded: the instruction register, loaded from the program
        # memory in the cycle after its fetch (LATCH: the memory's slow output goes into a
        # register before any decoding).
        cur = Signal(isa.INSTR_BITS)
        m.d.comb += cur.eq(ins)

        def f(name, op=None):
            return field(cur, name, op)

        op, fn = f("op"), f("fn")

        # --- decoded operands (registered in OPERANDS) ---------------------------------
        n = Signal(16)
        a_base, b_base, d_base = Signal(24), Signal(24), Signal(24)
        a_sp, b_sp, d_sp = Signal(4), Signal(4), Signal(4)
        sh_base = Signal(signed(IR_BITS + 2))
        y_ir = Signal(signed(IR_BITS))
        ln, stride = Signal(15), Signal(4)
        nch = Signal(10)                             # 32-byte chunks of a row
        bits, sym, red, red_ir, rbits = Signal(7), Signal(), Signal(3), Signal(4), Signal(5)
        ir_a_v = Signal(signed(IR_BITS))
        sop_imm = Signal(signed(32))
        ir_ra, ir_rb, ir_rc = Signal(signed(IR_BITS)), Signal(signed(IR_BITS)), Signal(signed(IR_BITS))

        # --- shared buses (defaults: nothing) ------------------------------------------
        rd_a_sp, rd_b_sp = Signal(5), Signal(5)
        rd_a, rd_a2, rd_b, rd_b2 = (Signal(24, name=nm) for nm in ("rd_a", "rd_a2", "rd_b", "rd_b2"))
        rot = Signal()
        wr_sp, wr_addr, wr_data, wr_en = Signal(5), Signal(24), Signal(64), Signal()
        idle = Signal()
        peek_addr = Signal(24)
        m.d.comb += [rd_a_sp.eq(a_sp), rd_b_sp.eq(b_sp)]

        # memory ports
        for sp, mem in mems.items():
            two = mem.reads == 2
            with m.If(idle):
                m.d.comb += mem.r_addr(0).eq(peek_addr)
            with m.Elif(rd_a_sp == sp):
                m.d.comb += mem.r_addr(0).eq(rd_a)
            with m.Else():
                m.d.comb += mem.r_addr(0).eq(rd_b2 if two else rd_b)
            if two:
                m.d.comb += mem.r_addr(1).eq(Mux((rd_a_sp == sp) & (rd_b_sp != sp), rd_a2, rd_b))
            ld = self.load.payload
            with m.If(idle):
                m.d.comb += [mem.w_addr.eq(ld.addr), mem.w_data.eq(ld.data),
                             mem.w_en.eq(self.load.valid & (ld.space == sp))]
            with m.Else():
                m.d.comb += [mem.w_addr.eq(wr_addr), mem.w_data.eq(wr_data),
                             mem.w_en.eq(wr_en & (wr_sp == sp))]

        def read_value(port, space, narrow=True):
            """The value read on ``port`` (0, 1) of ``space`` (a Signal), sign-extended."""
            out = Signal(signed(V_BITS), name=f"rv{port}")
            with m.Switch(space):
                for sp, mem in mems.items():
                    if port >= mem.reads:
                        continue
                    info = isa.SPACES[sp]
                    with m.Case(sp):
                        m.d.comb += out.eq(sext(mem.r_data(port), info.word_bits, info.signed))
            return out

        def two_port(space):
            return Cat(*(space == sp for sp, mem in mems.items() if mem.reads == 2)).any()

        a_val = read_value(0, rd_a_sp)
        a2_val = read_value(1, rd_a_sp)
        b_val = Signal(signed(V_BITS))
        m.d.comb += b_val.eq(Mux(two_port(rd_b_sp), read_value(1, rd_b_sp), read_value(0, rd_b_sp)))
        b2_val = read_value(0, rd_b_sp)
        b_row = Signal(8 * LANES)
        with m.Switch(rd_b_sp):
            for sp in (Space.EMB, Space.HEAD, Space.KVK, Space.KVV):
                with m.Case(sp):
                    m.d.comb += b_row.eq(mems[sp].r_row(0))

        # SR ports: 0 reads SR[a] (SOP), 1 reads SR[b] / SR[b_addr]
        sr_a = Signal(SW_BITS)
        sr_b = Signal(SW_BITS)
        m.d.comb += [sr_a.eq(sr_rd[0].data), sr_b.eq(sr_rd[1].data)]
        # SR reads follow the decoded instruction: SR[a], SR[b] (SOP) or SR[b_addr] (VOP,
        # SVOP), valid from the state after OPERANDS on
        m.d.comb += [sr_rd[0].addr.eq(Mux(field(cur, "op") == Op.SVOP, field(cur, "b2", Op.SVOP),
                                          field(cur, "a", Op.SOP))),
                     sr_rd[1].addr.eq(Mux(field(cur, "op") == Op.SOP, field(cur, "b", Op.SOP),
                                          field(cur, "b_addr", Op.VOP)[:8]))]
        sr_w_idx, sr_w_data, sr_w_en = Signal(8), Signal(SW_BITS), Signal()
        m.d.comb += [sr_wr.addr.eq(sr_w_idx), sr_wr.data.eq(sr_w_data), sr_wr.en.eq(sr_w_en)]

        # IR writes (one per cycle, by whichever unit finishes)
        ir_w_idx, ir_w_data, ir_w_en = Signal(4), Signal(signed(IR_BITS)), Signal()
        with m.If(ir_w_en & (ir_w_idx != isa.IR_ZERO)):
            m.d.sync += ir[ir_w_idx].eq(ir_w_data)

        def fail(code):
            m.d.sync += [status.eq(code), err_pc.eq(pc), err_pos.eq(pos)]
            m.next = "FINISH"

        def word_of(mv, ev):
            """A scalar word from a mantissa and a (wider) exponent."""
            return Cat(mv[:16], ev[:12])

        def scalar_bad(res):
            """A scalar-unit result that stops the run: its exponent leaves s12."""
            e = res.value.e.as_signed()
            return (res.value.m != 0) & (res.ovf | (e < isa.E_MIN) | (e > isa.E_MAX))

        # --- the VOP pipeline (runs beside the state machine) --------------------------
        vi = Signal(16)                  # issue index
        v_issue = Signal()
        half = n >> 1
        first_half = vi < half
        vl = [Signal(data.StructLayout({"valid": 1, "idx": 16, "fh": 1}), name=f"vop_s{k}")
              for k in range(VOP_STAGES + 1)]
        m.d.comb += [vl[0].valid.eq(v_issue), vl[0].idx.eq(vi), vl[0].fh.eq(first_half)]
        for k in range(VOP_STAGES):
            m.d.sync += vl[k + 1].eq(vl[k])
        y = Signal(signed(V_BITS))
        with m.Switch(b_sp):
            with m.Case(Space.SR):
                m.d.comb += y.eq(sr_b)
            with m.Case(Space.IR):
                m.d.comb += y.eq(y_ir)
            with m.Case(Space.NONE):
                m.d.comb += y.eq(0)
            with m.Default():
                m.d.comb += y.eq(b_val)
        # stage 1 registers the operands as read (the memories' outputs go nowhere else)
        ox, oy, op2 = (Signal(signed(V_BITS), name=nm) for nm in ("vop_x", "vop_y", "vop_p"))
        oc, os_ = Signal(signed(18), name="vop_c"), Signal(signed(18), name="vop_s")
        m.d.sync += [ox.eq(a_val), oy.eq(y), op2.eq(a2_val), oc.eq(b_val[:18].as_signed()),
                     os_.eq(b2_val[:18].as_signed())]
        v1, d1 = element_value(m, fn, ox, oy, op2, oc, os_, vl[2].fh)
        ye = Mux(fn == VFn.MULS, oy[16:28].as_signed(), 0)
        sh_full = sh_base - ye
        sh1 = clamp_signed(m, sh_full, SH_BITS, "vop_sh")
        is_exp = (fn == VFn.EXP2) | (fn == VFn.EXP2X)
        m.d.comb += [ex.i.valid.eq(vl[2].valid & is_exp), ex.i.payload.d.eq(d1)]
        r1v, r1s = Signal(signed(V_BITS)), Signal(signed(SH_BITS))
        r2v, r2s = Signal(signed(V_BITS)), Signal(signed(SH_BITS))
        m.d.sync += [r1v.eq(v1), r1s.eq(sh1), r2v.eq(r1v), r2s.eq(r1s)]
        v3 = Mux(is_exp, ex.o.payload.value, r2v)
        r4 = Signal(signed(V_BITS + 48))
        m.d.sync += r4.eq(shift_value(v3, r2s))
        out = Signal(signed(IR_BITS), name="vop_out_r")
        m.d.sync += out.eq(saturate_dynamic(m, r4, bits, sym))
        sq = Signal(IR_BITS, name="vop_sq")              # the square at stage VOP_STAGES
        m.d.sync += sq.eq((out * out)[:IR_BITS])
        # reductions
        maxabs = Signal(IR_BITS + 1)
        rsum, rsq = Signal(signed(IR_BITS)), Signal(signed(IR_BITS))
        rmax, rarg = Signal(signed(IR_BITS)), Signal(16)
        red_clear = Signal()
        absout = Mux(out < 0, -out, out)
        with m.If(red_clear):
            m.d.sync += [maxabs.eq(0), rsum.eq(0), rsq.eq(0), rmax.eq(-(1 << (IR_BITS - 1))), rarg.eq(0)]
        with m.Else():
            with m.If(vl[VOP_WRITE].valid):
                m.d.sync += rsum.eq(rsum + out)
                with m.If(absout > maxabs):
                    m.d.sync += maxabs.eq(absout)
                with m.If(out > rmax):
                    m.d.sync += [rmax.eq(out), rarg.eq(vl[VOP_WRITE].idx)]
            with m.If(vl[VOP_STAGES].valid):
                m.d.sync += rsq.eq(rsq + sq.as_signed())
        _, ma_lz = normalize_left(m, maxabs[:IR_BITS], IR_BITS)
        ma_bl = Mux(maxabs == 0, 0, IR_BITS - ma_lz)
        red_value = Signal(signed(IR_BITS))
        red_value_r = Signal(signed(IR_BITS))      # registered: the IR write one cycle later
        m.d.sync += red_value_r.eq(red_value)
        with m.Switch(red):
            with m.Case(Red.MAXABS):
                m.d.comb += red_value.eq(maxabs)
            with m.Case(Red.NORM):
                m.d.comb += red_value.eq(ma_bl - (rbits - 1))
            with m.Case(Red.SUM):
                m.d.comb += red_value.eq(rsum)
            with m.Case(Red.SUMSQ):
                m.d.comb += red_value.eq(rsq)
            with m.Case(Red.MAX):
                m.d.comb += red_value.eq(rmax)
            with m.Case(Red.ARGMAX):
                m.d.comb += red_value.eq(rarg)
        vop_write = vl[VOP_WRITE].valid & (d_sp != Space.NONE)
        vop_waddr = d_base + vl[VOP_WRITE].idx

        # --- DOT / AXPY pipeline ------------------------------------------------------------
        DL = 2 + lanes.latency          # issue -> row read -> lane inputs -> the lanes' sum
        dr, dch = Signal(16), Signal(10)           # issue: row, chunk
        d_issue = Signal()
        axpy = Signal()
        d_off = Signal(5)
        dl = [Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "r": 16, "ch": 10}),
                     name=f"dot_s{k}") for k in range(DL + 1)]
        row_addr = b_base + (dr << stride) + (dch << 5)
        m.d.comb += [dl[0].valid.eq(d_issue), dl[0].first.eq(Mux(axpy, dr == 0, dch == 0)),
                     dl[0].last.eq(Mux(axpy, dr == n - 1, dch == nch - 1)), dl[0].r.eq(dr), dl[0].ch.eq(dch)]
        for k in range(DL):
            m.d.sync += dl[k + 1].eq(dl[k])
        m.d.sync += d_off.eq(row_addr[:5])
        m.d.comb += q_rd.addr.eq(dch)
        shifted_row = (b_row >> Cat(Const(0, 3), d_off))[:8 * LANES]
        lane_ok = [(dl[1].ch * LANES + j) < ln for j in range(LANES)]
        # the lanes' inputs go into registers first (the rows' RAM outputs and read muxes
        # are slow): the lanes take a beat at stage 2
        for j in range(LANES):
            m.d.sync += [lanes.a[j].eq(Mux(lane_ok[j], q_rd.data[j], 0)),
                         lanes.b[j].eq(Mux(lane_ok[j], shifted_row[8 * j:8 * j + 8].as_signed(), 0))]
        m.d.sync += lanes.w.eq(a_val[:18].as_signed())
        m.d.comb += [lanes.en.eq(dl[2].valid), lanes.axpy.eq(axpy), lanes.first.eq(dl[2].first)]

        # --- the state machine ---------------------------------------------------------------
        cnt = Signal(17)                            # element / word counter of the states
        drain = Signal(4)
        su_req = su.i.payload
        sres = su.o.payload
        ocount = Signal(16)                         # SVOP results written
        su_err = Signal()
        maxe = Signal(signed(isa.SW_E_BITS))
        best, best_i, seen = Signal(signed(V_BITS)), Signal(16), Signal()
        draw_r, csum = Signal(signed(IR_BITS + 2)), Signal(signed(V_BITS))
        dcount = Signal(16)
        ch_w = Signal(6)                            # AXPY outputs of this chunk

        m.d.comb += self.busy.eq(~idle)
        with m.If(in_step):
            m.d.sync += step_cycles.eq(step_cycles + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1), self.load.ready.eq(1),
                             self.peek_req.ready.eq(~self.peek.valid), self.run.ready.eq(1),
                             peek_addr.eq(self.peek_req.payload.addr)]
                pk_sp = Signal(5)
                pk_pending = Signal()
                with m.If(self.peek.valid & self.peek.ready):
                    m.d.sync += self.peek.valid.eq(0)
                with m.If(self.peek_req.valid & self.peek_req.ready):
                    m.d.sync += [pk_sp.eq(self.peek_req.payload.space), pk_pending.eq(1)]
                with m.If(pk_pending):
                    m.d.sync += [pk_pending.eq(0), self.peek.valid.eq(1), self.peek.payload.eq(0)]
                    with m.Switch(pk_sp):
                        for sp, mem in mems.items():
                            with m.Case(sp):
                                m.d.sync += self.peek.payload.eq(mem.r_data(0))
                with m.If(self.run.valid):
                    m.d.sync += [prm.eq(self.run.payload), status.eq(Status.OK), err_pc.eq(0),
                                 err_pos.eq(0), n_done.eq(0), total.eq(0),
                                 last_pos.eq(self.run.payload.pos0 + self.run.payload.n_feed
                                             + self.run.payload.n_new - 2)]
                    m.next = "RUN_CHECK"

            with m.State("RUN_CHECK"):
                m.d.sync += [xs.eq(prm.state), sampling.eq(prm.inv_t_m != 0), pos.eq(prm.pos0), cnt.eq(0)]
                ok = (prm.n_feed >= 1) & (prm.n_new >= 1) & (last_pos + 1 <= lim.context)
                with m.If(ok):
                    m.next = "SR_INIT"
                with m.Else():
                    m.d.sync += status.eq(Status.BAD_PARAMS)
                    m.next = "FINISH"

            with m.State("SR_INIT"):
                # SR[0] = inv_t (a zero one canonical), SR[1..] = SRINIT (read one cycle,
                # written the next)
                m.d.comb += [rd_a_sp.eq(Space.SRINIT), rd_a.eq(cnt)]
                prev = cnt - 1
                inv_t_word = word_of(prm.inv_t_m, Mux(prm.inv_t_m == 0, Const(E_ZERO, signed(12)),
                                                      prm.inv_t_e))
                m.d.comb += [sr_w_idx.eq(prev), sr_w_en.eq(cnt != 0),
                             sr_w_data.eq(Mux(prev == 0, inv_t_word, a_val))]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == lim.sr_regs):
                    m.next = "STEP_START"

            with m.State("STEP_START"):
                m.d.comb += [rd_a_sp.eq(Space.TOKENS), rd_a.eq(pos)]
                m.d.sync += [pc.eq(0), step_cycles.eq(1), in_step.eq(1),
                             gen.eq(pos + 1 >= prm.pos0 + prm.n_feed)]
                m.next = "STEP_TOKEN"
            with m.State("STEP_TOKEN"):
                m.d.comb += rd_a_sp.eq(Space.TOKENS)
                m.d.sync += token.eq(a_val)
                m.next = "FETCH"

            with m.State("FETCH"):
                m.d.comb += [rd_a_sp.eq(Space.PROG), rd_a.eq(pc << 1)]
                with m.If(pc >= lim.prog_words):
                    fail(Status.PROG_END)
                with m.Else():
                    m.next = "LATCH"

            with m.State("LATCH"):
                m.d.sync += ins.eq(mems[Space.PROG].r_row(0))
                m.next = "OPERANDS"

            with m.State("OPERANDS"):
                V = Op.VOP
                dyn = Mux(f("dyn_src", V) == DynSrc.TOKEN, token, pos) << f("dyn_k", V)
                dsel = f("dyn_sel", V)
                m.d.sync += [
                    n.eq(f("n", V) + Mux(f("npos", V), pos + 1, 0)),
                    a_sp.eq(f("a_space", V)), b_sp.eq(f("b_space", V)), d_sp.eq(f("d_space", V)),
                    a_base.eq(f("a_addr", V) + Mux(dsel == Dyn.A, dyn, 0)),
                    b_base.eq(f("b_addr", V) + Mux(dsel == Dyn.B, dyn, 0)),
                    d_base.eq(f("d_addr", V) + Mux(dsel == Dyn.D, dyn, 0)),
                    sh_base.eq(f("sh_imm", V) + ir[f("sh_ir", V)]),
                    y_ir.eq(ir[f("b_addr", V)[:4]]),
                    bits.eq(f("bits", V)), sym.eq(f("sym", V)), red.eq(f("red", V)),
                    red_ir.eq(f("red_ir", V)), rbits.eq(f("rbits", V)),
                    ln.eq(f("len", Op.DOT)), stride.eq(f("stride", Op.DOT)),
                    nch.eq(Mux(f("len", Op.DOT) == 0, 1, (f("len", Op.DOT) + LANES - 1) >> 5)),
                    ir_a_v.eq(ir[f("ir_a", Op.SAMPLE)]),
                    sop_imm.eq(f("imm", Op.SOP)),
                    ir_ra.eq(ir[f("a", Op.SOP)[:4]]), ir_rb.eq(ir[f("b", Op.SOP)[:4]]),
                    ir_rc.eq(ir[f("c", Op.SOP)]),
                    vi.eq(0), dr.eq(0), dch.eq(0), cnt.eq(0), drain.eq(0), ocount.eq(0),
                    su_err.eq(0), maxe.eq(isa.E_MIN), seen.eq(0), csum.eq(0), dcount.eq(0),
                ]
                with m.If(op == Op.SOP):
                    m.d.sync += [a_sp.eq(f("s_space", Op.SOP)),
                                 a_base.eq(f("s_addr", Op.SOP) +
                                           Mux(f("dyn_sel", Op.SOP) != Dyn.NONE, dyn, 0))]
                m.d.comb += red_clear.eq(1)
                cond = f("cond")
                skip = ((f("gen_only") & ~gen) | ((cond == Cond.GREEDY) & sampling) |
                        ((cond == Cond.SAMPLED) & ~sampling))
                # a function code past its class's enum is BAD_OPCODE, as decoding is
                fn_ok = Signal()
                m.d.comb += fn_ok.eq(1)
                with m.Switch(op):
                    for o, e in isa.FN_ENUMS.items():
                        with m.Case(o):
                            m.d.comb += fn_ok.eq(fn <= max(e))
                with m.If((op > Op.END) | (op == Op.ATTN)):      # ATTN: not built (yet)
                    fail(Status.BAD_OPCODE)
                with m.Elif(op == Op.END):
                    m.next = "END"
                with m.Elif(skip | (op == Op.NOP)):
                    m.next = "NEXT"
                with m.Elif(~fn_ok):
                    fail(Status.BAD_OPCODE)
                with m.Else():
                    with m.Switch(op):
                        with m.Case(Op.VOP):
                            m.next = "VOP"
                        with m.Case(Op.SVOP):
                            m.next = "SVOP"
                        with m.Case(Op.SOP):
                            m.next = "SOP"
                        with m.Case(Op.DOT):
                            m.next = "DOT_Q"
                        with m.Case(Op.AXPY):
                            m.next = "AXPY"
                        with m.Case(Op.MATVEC):
                            m.next = "MATVEC"
                        with m.Case(Op.SAMPLE):
                            m.next = "SAMPLE"

            with m.State("NEXT"):               # pc + 1 and its fetch in one cycle
                m.d.comb += [rd_a_sp.eq(Space.PROG), rd_a.eq((pc + 1) << 1)]
                m.d.sync += pc.eq(pc + 1)
                with m.If(pc + 1 >= lim.prog_words):
                    m.d.sync += [status.eq(Status.PROG_END), err_pc.eq(pc + 1), err_pos.eq(pos)]
                    m.next = "FINISH"
                with m.Else():
                    m.next = "LATCH"

            with m.State("END"):
                m.d.comb += [wr_sp.eq(Space.CYCLES), wr_addr.eq(pos), wr_data.eq(step_cycles),
                             wr_en.eq(1)]
                m.d.sync += [total.eq(total + step_cycles), in_step.eq(0), pos.eq(pos + 1),
                             n_done.eq(n_done + gen)]
                with m.If(pos >= last_pos):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "STEP_START"

            # ---- VOP: issue one element a cycle, then drain the pipeline ------------------
            with m.State("VOP"):
                with m.If(vi < n):
                    j = Mux(first_half, vi, vi - half)
                    m.d.comb += [v_issue.eq(1), rd_a.eq(a_base + vi), rd_b.eq(b_base + vi)]
                    with m.If(fn == VFn.ROT):
                        m.d.comb += [rd_a2.eq(a_base + Mux(first_half, vi + half, vi - half)),
                                     rd_b.eq(b_base + j), rd_b2.eq(b_base + j + half)]
                    m.d.sync += vi.eq(vi + 1)
                with m.Else():
                    m.d.sync += drain.eq(drain + 1)
                    with m.If(drain == VOP_STAGES + 1):
                        m.d.comb += [ir_w_idx.eq(red_ir), ir_w_data.eq(red_value_r),
                                     ir_w_en.eq(red != Red.NONE)]
                        m.next = "NEXT"

            # ---- SVOP: the scalar unit over a vector, one element a cycle ------------------
            with m.State("SVOP"):
                issue = vi < n
                with m.If(issue):
                    m.d.comb += [rd_a.eq(a_base + vi), rd_b.eq(b_base + vi)]
                    m.d.sync += vi.eq(vi + 1)
                issued = Signal()
                m.d.sync += issued.eq(issue)
                xw = a_val[:SW_BITS]
                yw = Mux(b_sp == Space.SR, sr_b, b_val[:SW_BITS])
                smul = (fn == SVFn.SMUL) | (fn == SVFn.SMUL2)
                m.d.comb += [su.i.valid.eq(issued & smul), su_req.op.eq(ScalarOp.MUL),
                             su_req.a.m.eq(xw[:16]), su_req.a.e.eq(xw[16:28].as_signed()),
                             su_req.b.m.eq(yw[:16]), su_req.b.e.eq(yw[16:28].as_signed())]
                with m.If(issued & (xw[16:28].as_signed() > maxe)):
                    m.d.sync += maxe.eq(xw[16:28].as_signed())
                with m.If(su.o.valid):
                    m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(d_base + ocount),
                                 wr_data.eq(word_of(sres.value.m, sres.value.e)),
                                 wr_en.eq(d_sp != Space.NONE)]
                    m.d.sync += ocount.eq(ocount + 1)
                    with m.If(scalar_bad(sres)):
                        m.d.sync += su_err.eq(1)
                done_all = Mux(smul, ocount == n, ~issue & ~issued)
                with m.If(done_all):
                    with m.If(su_err):
                        fail(Status.SCALAR_OVF)
                    with m.Elif(fn == SVFn.SMUL2):
                        m.d.sync += [vi.eq(0), ocount.eq(0)]
                        m.next = "SVOP2"
                    with m.Else():
                        m.d.comb += [ir_w_idx.eq(red_ir), ir_w_data.eq(maxe),
                                     ir_w_en.eq(red == Red.MAXE)]
                        m.next = "NEXT"

            # SMUL2's second multiply: D[j] = D[j] * SR[b2], another pass over D
            with m.State("SVOP2"):
                issue = vi < n
                m.d.comb += rd_a_sp.eq(d_sp)
                with m.If(issue):
                    m.d.comb += rd_a.eq(d_base + vi)
                    m.d.sync += vi.eq(vi + 1)
                issued = Signal()
                m.d.sync += issued.eq(issue)
                xw = a_val[:SW_BITS]
                m.d.comb += [su.i.valid.eq(issued), su_req.op.eq(ScalarOp.MUL),
                             su_req.a.m.eq(xw[:16]), su_req.a.e.eq(xw[16:28].as_signed()),
                             su_req.b.m.eq(sr_a[:16]), su_req.b.e.eq(sr_a[16:28].as_signed())]
                with m.If(su.o.valid):
                    m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(d_base + ocount),
                                 wr_data.eq(word_of(sres.value.m, sres.value.e)), wr_en.eq(1)]
                    m.d.sync += ocount.eq(ocount + 1)
                    with m.If(scalar_bad(sres)):
                        m.d.sync += su_err.eq(1)
                with m.If(ocount == n):
                    with m.If(su_err):
                        fail(Status.SCALAR_OVF)
                    with m.Else():
                        m.d.comb += [ir_w_idx.eq(red_ir), ir_w_data.eq(maxe),
                                     ir_w_en.eq(red == Red.MAXE)]
                        m.next = "NEXT"

            # ---- SOP: one scalar-unit request, or an integer / memory op -------------------
            with m.State("SOP"):
                d = f("d", Op.SOP)
                m.d.comb += [su_req.a.m.eq(sr_a[:16]), su_req.a.e.eq(sr_a[16:28].as_signed()),
                             su_req.b.m.eq(sr_b[:16]), su_req.b.e.eq(sr_b[16:28].as_signed())]
                kmin, kmax = -(1 << (SU_EXP_BITS - 1)), (1 << (SU_EXP_BITS - 1)) - 1

                def su_start(sop, k=None, x=None):
                    m.d.comb += [su.i.valid.eq(1), su_req.op.eq(sop)]
                    if k is not None:
                        m.d.comb += su_req.k.eq(Mux(k < kmin, kmin, Mux(k > kmax, kmax, k)))
                    if x is not None:
                        m.d.comb += su_req.x.eq(x)
                    m.next = "SOP_WAIT"

                with m.Switch(fn):
                    with m.Case(SFn.FROM_INT):
                        xv = ir_ra + sop_imm
                        with m.If(xv < 0):
                            fail(Status.SCALAR_OVF)
                        with m.Else():
                            su_start(ScalarOp.FROM_INT, k=ir_rb, x=xv)
                    with m.Case(SFn.MUL):
                        su_start(ScalarOp.MUL)
                    with m.Case(SFn.ADD):
                        su_start(ScalarOp.ADD)
                    with m.Case(SFn.SHIFT):
                        su_start(ScalarOp.SHIFT, k=ir_rb + sop_imm)
                    with m.Case(SFn.RECIP):
                        su_start(ScalarOp.RECIP)
                    with m.Case(SFn.RSQRT):
                        su_start(ScalarOp.RSQRT)
                    with m.Case(SFn.LOAD):
                        m.d.comb += rd_a.eq(a_base)
                        m.next = "SOP_LOAD"
                    with m.Case(SFn.STORE):
                        m.d.comb += [wr_sp.eq(a_sp), wr_addr.eq(a_base), wr_data.eq(sr_a), wr_en.eq(1)]
                        m.next = "NEXT"
                    with m.Case(SFn.IADD):
                        m.d.comb += [ir_w_idx.eq(d[:4]), ir_w_data.eq(ir_ra + ir_rb + sop_imm),
                                     ir_w_en.eq(1)]
                        m.next = "NEXT"
                    with m.Case(SFn.IMAXE):
                        e = sr_a[16:28].as_signed()
                        take = (sr_a[:16] != 0) & (ir_rb != 0) & (e > ir_rc)
                        m.d.comb += [ir_w_idx.eq(d[:4]), ir_w_data.eq(Mux(take, e, ir_rc)), ir_w_en.eq(1)]
                        m.next = "NEXT"
                    with m.Default():
                        m.next = "NEXT"
            with m.State("SOP_WAIT"):
                with m.If(su.o.valid):
                    with m.If(scalar_bad(sres)):
                        fail(Status.SCALAR_OVF)
                    with m.Else():
                        m.d.comb += [sr_w_idx.eq(f("d", Op.SOP)), sr_w_en.eq(1),
                                     sr_w_data.eq(word_of(sres.value.m, sres.value.e))]
                        m.next = "NEXT"
            with m.State("SOP_LOAD"):
                m.d.comb += [sr_w_idx.eq(f("d", Op.SOP)), sr_w_en.eq(1), sr_w_data.eq(a_val[:SW_BITS])]
                m.next = "NEXT"

            # ---- MATVEC: the engine, its results into D ------------------------------------
            with m.State("MATVEC"):
                mvm, mvk = f("m", Op.MATVEC), f("k", Op.MATVEC)
                m.d.comb += [drv.start.valid.eq(1), drv.start.payload.base.eq(f("base", Op.MATVEC)),
                             drv.start.payload.m.eq(mvm), drv.start.payload.k.eq(mvk)]
                with m.If(drv.start.ready):
                    with m.If((mvm == 0) | (mvk == 0)):
                        m.next = "NEXT"
                    with m.Else():
                        m.next = "MATVEC_RES"
            with m.State("MATVEC_RES"):
                r = drv.res.payload
                m.d.comb += [drv.res.ready.eq(1), wr_sp.eq(f("d_space", Op.MATVEC)),
                             wr_addr.eq(f("d_addr", Op.MATVEC) + r.index), wr_data.eq(r.value.as_signed()),
                             wr_en.eq(drv.res.valid)]
                with m.If(drv.res.valid & r.last):
                    m.next = "NEXT"

            # ---- DOT: Q from A, then one 32-byte chunk of a row per cycle ------------------
            with m.State("DOT_Q"):
                m.d.comb += axpy.eq(0)
                qi = Signal(16)
                qv = Signal()
                m.d.sync += [qi.eq(cnt), qv.eq(cnt < ln)]
                with m.If(cnt < ln):
                    m.d.comb += rd_a.eq(a_base + cnt)
                m.d.sync += cnt.eq(cnt + 1)
                m.d.comb += [q_wr.addr.eq(qi >> 5), q_wr.en.eq(Mux(qv, 1 << qi[:5], 0))]
                m.d.comb += [q_wr.data[j].eq(a_val[:8].as_signed()) for j in range(LANES)]
                with m.If(~qv & (cnt > ln)):
                    m.next = "DOT"
            with m.State("DOT"):
                m.d.comb += axpy.eq(0)
                with m.If(dr < n):
                    m.d.comb += [d_issue.eq(1), rd_b.eq(row_addr)]
                    with m.If(dch == nch - 1):
                        m.d.sync += [dch.eq(0), dr.eq(dr + 1)]
                    with m.Else():
                        m.d.sync += dch.eq(dch + 1)
                with m.Else():
                    m.d.sync += drain.eq(drain + 1)
                    with m.If(drain == DL):
                        m.next = "NEXT"
                with m.If(dl[DL].valid & dl[DL].last):
                    m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(d_base + dl[DL].r), wr_data.eq(lanes.dot),
                                 wr_en.eq(1)]

            # ---- AXPY: per chunk of 32 outputs, every row, then write the chunk -------------
            with m.State("AXPY"):
                m.d.comb += axpy.eq(1)
                with m.If(ln == 0):                 # no outputs
                    m.next = "NEXT"
                with m.Elif(dr < n):
                    m.d.comb += [d_issue.eq(1), rd_a.eq(a_base + dr), rd_b.eq(row_addr)]
                    m.d.sync += dr.eq(dr + 1)
                with m.Else():
                    m.d.sync += drain.eq(drain + 1)
                    with m.If(drain == DL):
                        m.d.sync += [drain.eq(0), ch_w.eq(0)]
                        m.next = "AXPY_WRITE"
            with m.State("AXPY_WRITE"):
                m.d.comb += axpy.eq(1)
                oidx = (dch << 5) + ch_w
                m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(d_base + oidx),
                             wr_data.eq(Mux(n == 0, 0, Array(lanes.acc[j] for j in range(LANES))[ch_w[:5]])),
                             wr_en.eq(1)]
                m.d.sync += ch_w.eq(ch_w + 1)
                with m.If((ch_w == LANES - 1) | (oidx + 1 >= ln)):
                    m.d.sync += [dch.eq(dch + 1), dr.eq(0)]
                    with m.If(dch == nch - 1):
                        m.next = "NEXT"
                    with m.Else():
                        m.next = "AXPY"

            # ---- SAMPLE ---------------------------------------------------------------------
            with m.State("SAMPLE"):
                with m.Switch(fn):
                    with m.Case(SampleFn.TCHECK):
                        with m.If(token >= n):
                            fail(Status.BAD_TOKEN)
                        with m.Else():
                            m.next = "NEXT"
                    with m.Case(SampleFn.EMIT):
                        with m.If((ir_a_v < 0) | (ir_a_v >= n)):
                            fail(Status.BAD_TOKEN)
                        with m.Else():
                            m.d.comb += [wr_sp.eq(Space.TOKENS), wr_addr.eq(pos + 1), wr_data.eq(ir_a_v),
                                         wr_en.eq(1)]
                            m.next = "NEXT"
                    with m.Case(SampleFn.DRAW):
                        nxt = xorshift32_next(xs)
                        m.d.sync += [xs.eq(nxt), draw_r.eq((nxt * ir_a_v) >> 32)]
                        m.next = "DRAW"
                    with m.Case(SampleFn.TOPK):
                        with m.If((prm.top_k != 0) & (prm.top_k < n)):
                            m.next = "TOPK_CLEAR"
                        with m.Else():
                            m.next = "NEXT"
                    with m.Default():
                        m.next = "NEXT"
            with m.State("DRAW"):
                issue = vi < n
                issued = Signal()
                m.d.sync += issued.eq(issue)
                with m.If(issue):
                    m.d.comb += rd_a.eq(a_base + vi)
                    m.d.sync += vi.eq(vi + 1)
                with m.If(issued):
                    s_new = csum + a_val
                    m.d.sync += csum.eq(s_new)
                    with m.If(s_new <= draw_r):
                        m.d.sync += dcount.eq(dcount + 1)
                with m.If(~issue & ~issued):
                    m.d.comb += [ir_w_idx.eq(f("ir_d", Op.SAMPLE)), ir_w_data.eq(dcount), ir_w_en.eq(1)]
                    m.next = "NEXT"
            with m.State("TOPK_CLEAR"):
                m.d.comb += [k_wr.addr.eq(vi), k_wr.data.eq(0), k_wr.en.eq(1)]
                m.d.sync += vi.eq(vi + 1)
                with m.If(vi == n - 1):
                    m.d.sync += [vi.eq(0), cnt.eq(0)]
                    m.next = "TOPK_PASS"
            with m.State("TOPK_PASS"):
                # one masked argmax pass: the largest unmasked A[i], ties to the lowest i
                issue = vi < n
                issued, ii = Signal(), Signal(16)
                m.d.sync += [issued.eq(issue), ii.eq(vi)]
                with m.If(issue):
                    m.d.comb += [rd_a.eq(a_base + vi), k_rd.addr.eq(vi)]
                    m.d.sync += vi.eq(vi + 1)
                with m.If(issued & ~k_rd.data & (~seen | (a_val > best))):
                    m.d.sync += [seen.eq(1), best.eq(a_val), best_i.eq(ii)]
                with m.If(~issue & ~issued):
                    m.d.comb += [k_wr.addr.eq(best_i), k_wr.data.eq(1), k_wr.en.eq(1)]
                    m.d.sync += [vi.eq(0), seen.eq(0), cnt.eq(cnt + 1)]
                    with m.If(cnt + 1 == prm.top_k):
                        m.next = "TOPK_ZERO"
            with m.State("TOPK_ZERO"):
                issue = vi < n
                issued, ii = Signal(), Signal(16)
                m.d.sync += [issued.eq(issue), ii.eq(vi)]
                with m.If(issue):
                    m.d.comb += k_rd.addr.eq(vi)
                    m.d.sync += vi.eq(vi + 1)
                with m.If(issued & ~k_rd.data):
                    m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(d_base + ii), wr_data.eq(0), wr_en.eq(1)]
                with m.If(~issue & ~issued):
                    m.next = "NEXT"

            # ---- end of a run: PARAM words, then the result ---------------------------------
            with m.State("FINISH"):
                m.d.sync += [in_step.eq(0), cnt.eq(0)]
                m.next = "PARAM_WRITE"
            with m.State("PARAM_WRITE"):
                res = Signal(result_layout())
                m.d.comb += [res.status.eq(status), res.cycles.eq(total), res.state.eq(xs),
                             res.err_pc.eq(err_pc), res.err_pos.eq(err_pos), res.n_done.eq(n_done)]
                words = {isa.PARAM_WORDS[nm]: getattr(prm, nm) for nm, _, _ in isa.RUN_PARAMS}
                words.update({isa.RESULT_WORDS[nm]: getattr(res, nm) for nm, _, _ in isa.RUN_RESULT})
                with m.Switch(cnt):
                    for w, v in words.items():
                        with m.Case(w):
                            m.d.comb += [wr_sp.eq(Space.PARAM), wr_addr.eq(w),
                                         wr_data.eq(v),
                                         wr_en.eq(1)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == isa.PARAM_DEPTH - 1):
                    m.d.sync += [self.done.payload.eq(res), self.done.valid.eq(1)]
                    m.next = "DONE"
            with m.State("DONE"):
                with m.If(self.done.ready):
                    m.d.sync += self.done.valid.eq(0)
                    m.next = "IDLE"

        # VOP writes (after the state machine: the pipeline's last stage)
        with m.If(vop_write):
            m.d.comb += [wr_sp.eq(d_sp), wr_addr.eq(vop_waddr), wr_data.eq(out), wr_en.eq(1)]
        m.d.comb += [drv.act_index.eq(vop_waddr), drv.act_data.eq(out[:8]),
                     drv.act_en.eq(vop_write & (d_sp == Space.ACT))]
        return m
