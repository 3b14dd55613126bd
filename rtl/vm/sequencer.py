"""The sequencer of the vector machine (machine.py): one state machine that takes a run,
fetches and decodes each instruction of the step program and drives the datapath
(datapath.py) through the instruction's pass.

The states come in groups, one method each, added in the order they were first written
(the order the state encoding and the Verilog follow)."""

from amaranth import Array, Const, Mux, Signal, signed

from ternary_core.integer.fixed import E_ZERO
from ternary_core.offload import isa
from ternary_core.offload.isa import (AttnFn, Cond, Dyn, DynSrc, Op, Red, SampleFn, SFn, Space,
                                      MachineStatus, SVFn, VFn)

from ..arith.scalar_unit import ScalarOp
from ..arith.xorshift import xorshift32_next
from .attention import attention_states
from .transfer_states import latch_transfer_operands, transfer_states
from .datapath import (INDEX_BITS, IR_BITS, IR_INDEX_BITS, LANE_SHIFT, LANES, SU_EXP_BITS,
                       SW_BITS, VOP_STAGES, scalar_view, scalar_word)
from .layouts import SPACE_BITS, result_layout
from .valu import V_BITS


def scalar_bad(res):
    """A scalar-unit result that stops the run: its exponent leaves s12."""
    e = res.value.e.as_signed()
    return (res.value.m != 0) & (res.ovf | (e < isa.E_MIN) | (e > isa.E_MAX))


class MachineSequencer:
    """The VM's state machine, built into ``m`` for ``vm`` (the VectorMachine, whose
    ``load``/``peek``/``run``/``done``/``busy`` ports it serves) over ``dp`` (its
    MachineDatapath). Call :meth:`build` once.

    Its own registers: ``cnt`` (the states' element / word counter), ``drain`` (cycles
    since a pipeline's last issue), ``ocount`` (SVOP results written), ``su_err``,
    ``maxe`` (SVOP's MAXE), ``best``/``best_i``/``seen`` (TOPK's argmax), ``draw_r``/
    ``csum``/``dcount`` (DRAW), ``ch_w`` (AXPY outputs of this chunk written).
    """

    def __init__(self, m, vm, dp):
        self.m, self.vm, self.dp, self.lim = m, vm, dp, vm.limits
        cnt = Signal(17)                            # element / word counter of the states
        drain = Signal(4)
        ocount = Signal(INDEX_BITS)                 # SVOP results written
        su_err = Signal()
        maxe = Signal(signed(isa.SW_E_BITS))
        best, best_i, seen = Signal(signed(V_BITS)), Signal(INDEX_BITS), Signal()
        draw_r, csum = Signal(signed(IR_BITS + 2)), Signal(signed(V_BITS))
        dcount = Signal(INDEX_BITS)
        ch_w = Signal(LANE_SHIFT + 1)               # AXPY outputs of this chunk
        self.cnt, self.drain, self.ocount, self.su_err, self.maxe = cnt, drain, ocount, su_err, maxe
        self.best, self.best_i, self.seen = best, best_i, seen
        self.draw_r, self.csum, self.dcount, self.ch_w = draw_r, csum, dcount, ch_w
        self.su_req, self.sres = dp.su.i.payload, dp.su.o.payload

    def fail(self, code):
        """Stop the run with status ``code`` at this pc and pos."""
        dp = self.dp
        self.m.d.sync += [dp.status.eq(code), dp.err_pc.eq(dp.pc), dp.err_pos.eq(dp.pos)]
        self.m.next = "FINISH"

    def build(self):
        """The step cycle counter, then the state machine, its states in groups."""
        m, dp = self.m, self.dp
        m.d.comb += self.vm.busy.eq(~dp.idle)
        with m.If(dp.in_step):
            m.d.sync += dp.step_cycles.eq(dp.step_cycles + 1)

        with m.FSM():
            self._idle_state()
            self._run_start_states()
            self._fetch_decode_states()
            self._next_end_states()
            self._vop_state()
            self._svop_state()
            self._svop2_state()
            self._sop_state()
            self._sop_result_states()
            self._matvec_states()
            self._dot_states()
            self._axpy_states()
            self._sample_states()
            self._topk_states()
            self._finish_states()
            attention_states(self)
            if self.lim.sdram:
                transfer_states(self)

    # --- between runs --------------------------------------------------------------------

    def _idle_state(self):
        """IDLE: uploads (``load``: one word a cycle), read-back (``peek``: the word two
        cycles after its request, then held until taken) and a run's start."""
        m, dp, vm = self.m, self.dp, self.vm
        with m.State("IDLE"):
            m.d.comb += [dp.idle.eq(1), vm.load.ready.eq(1),
                         vm.peek_req.ready.eq(~vm.peek.valid), vm.run.ready.eq(1),
                         dp.peek_addr.eq(vm.peek_req.payload.addr)]
            pk_sp = Signal(SPACE_BITS)
            pk_pending = Signal()
            with m.If(vm.peek.valid & vm.peek.ready):
                m.d.sync += vm.peek.valid.eq(0)
            with m.If(vm.peek_req.valid & vm.peek_req.ready):
                m.d.sync += [pk_sp.eq(vm.peek_req.payload.space), pk_pending.eq(1)]
            with m.If(pk_pending):
                m.d.sync += [pk_pending.eq(0), vm.peek.valid.eq(1), vm.peek.payload.eq(0)]
                with m.Switch(pk_sp):
                    for sp, mem in dp.mems.items():
                        with m.Case(sp):
                            m.d.sync += vm.peek.payload.eq(mem.r_data(0))
            with m.If(vm.run.valid):
                run = vm.run.payload
                m.d.sync += [dp.prm.eq(run), dp.status.eq(MachineStatus.OK), dp.err_pc.eq(0),
                             dp.err_pos.eq(0), dp.n_done.eq(0), dp.total.eq(0),
                             dp.last_pos.eq(run.pos0 + run.n_feed + run.n_new - 2)]
                m.next = "RUN_CHECK"

    def _run_start_states(self):
        """RUN_CHECK (1 cycle: BAD_PARAMS), SR_INIT (``sr_regs + 1`` cycles: SR[0] =
        inv_t, SR[1..] from SRINIT), then per position STEP_START and STEP_TOKEN (2 cycles:
        the token at ``pos`` read from TOKENS)."""
        m, dp, lim, cnt = self.m, self.dp, self.lim, self.cnt
        prm = dp.prm
        with m.State("RUN_CHECK"):
            m.d.sync += [dp.xs.eq(prm.state), dp.sampling.eq(prm.inv_t_m != 0),
                         dp.pos.eq(prm.pos0), cnt.eq(0)]
            ok = (prm.n_feed >= 1) & (prm.n_new >= 1) & (dp.last_pos + 1 <= lim.context)
            with m.If(ok):
                m.next = "SR_INIT"
            with m.Else():
                m.d.sync += dp.status.eq(MachineStatus.BAD_PARAMS)
                m.next = "FINISH"

        with m.State("SR_INIT"):
            # SR[0] = inv_t (a zero one canonical), SR[1..] = SRINIT (read one cycle,
            # written the next)
            m.d.comb += [dp.rd_a_sp.eq(Space.SRINIT), dp.rd_a.eq(cnt)]
            prev = cnt - 1
            inv_t_word = scalar_word(prm.inv_t_m, Mux(prm.inv_t_m == 0,
                                                      Const(E_ZERO, signed(isa.SW_E_BITS)),
                                                      prm.inv_t_e))
            m.d.comb += [dp.sr_w_idx.eq(prev), dp.sr_w_en.eq(cnt != 0),
                         dp.sr_w_data.eq(Mux(prev == 0, inv_t_word, dp.a_val))]
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == lim.sr_regs):
                m.next = "STEP_START"

        with m.State("STEP_START"):
            m.d.comb += [dp.rd_a_sp.eq(Space.TOKENS), dp.rd_a.eq(dp.pos)]
            m.d.sync += [dp.pc.eq(0), dp.fa.eq(0), dp.step_cycles.eq(1), dp.in_step.eq(1),
                         dp.gen.eq(dp.pos + 1 >= prm.pos0 + prm.n_feed)]
            m.next = "STEP_TOKEN"
        with m.State("STEP_TOKEN"):
            m.d.comb += dp.rd_a_sp.eq(Space.TOKENS)
            m.d.sync += dp.token.eq(dp.a_val)
            m.next = "FETCH"

    # --- fetch and decode ----------------------------------------------------------------

    def _fetch_decode_states(self):
        """FETCH (the program word at ``pc``, which is PROG's ``fa``; PROG_END past the
        program), LATCH (into the instruction register), OPERANDS (the decoded operands
        registered, the pass's counters cleared, then to the instruction's first state):
        3 cycles."""
        m, dp = self.m, self.dp
        with m.State("FETCH"):
            m.d.comb += [dp.rd_a_sp.eq(Space.PROG), dp.rd_a.eq(dp.fa << 1)]
            with m.If(dp.pc >= dp.pc_limit):
                self.fail(MachineStatus.PROG_END)
            with m.Else():
                m.next = "LATCH"

        with m.State("LATCH"):
            m.d.sync += dp.ins.eq(dp.mems[Space.PROG].r_row(0))
            m.next = "OPERANDS"

        with m.State("OPERANDS"):
            self._latch_operands()
            m.d.comb += dp.red_clear.eq(1)
            self._dispatch()

    def _latch_operands(self):
        """OPERANDS' registers, whatever the class (the next state reads what its class
        uses): n and the A, B and D operands where the classes that stream over vectors
        place them (the dynamic offset, token or pos shifted, added to the base that
        ``dyn_sel`` names; SOP's A is its ``s_space``/``s_addr``), VOP's shift, bits and
        reduction, DOT's length and stride, the IRs that SOP and SAMPLE name; the
        passes' counters cleared. ATTN (no dynamic mode) sets the VOP pipeline's function,
        shift, width and reduction of its pass (SCORES: MULS to 24 bits, MAX; PV: EXP2, then
        the weights to 18 bits, SUM of the exp2 values) and its own length and stride."""
        m, dp, f, ir = self.m, self.dp, self.dp.field, self.dp.ir
        V, A = Op.VOP, Op.ATTN
        attn = dp.op == Op.ATTN
        pv = attn & (dp.fn == AttnFn.PV)
        dyn = Mux(f("dyn_src", V) == DynSrc.TOKEN, dp.token, dp.pos) << f("dyn_k", V)
        dsel = Mux(attn, Dyn.NONE, f("dyn_sel", V))
        ln = Mux(attn, f("len", A), f("len", Op.DOT))
        stride = Mux(attn, f("stride", A), f("stride", Op.DOT))
        sh_ir = Mux(attn, Mux(pv, f("sh_ir", A), 0), f("sh_ir", V))     # IR[0] reads 0
        m.d.sync += [
            dp.n.eq(f("n", V) + Mux(f("npos", V), dp.pos + 1, 0)),
            dp.a_sp.eq(f("a_space", V)), dp.b_sp.eq(f("b_space", V)), dp.d_sp.eq(f("d_space", V)),
            dp.a_base.eq(f("a_addr", V) + Mux(dsel == Dyn.A, dyn, 0)),
            dp.b_base.eq(f("b_addr", V) + Mux(dsel == Dyn.B, dyn, 0)),
            dp.d_base.eq(f("d_addr", V) + Mux(dsel == Dyn.D, dyn, 0)),
            dp.sh_base.eq(Mux(attn, f("sh_imm", A), f("sh_imm", V)) + ir[sh_ir]),
            dp.y_ir.eq(ir[Mux(attn, f("ir_b", A), f("b_addr", V)[:IR_INDEX_BITS])]),
            dp.bits.eq(Mux(attn, Mux(pv, isa.MUL_Y_BITS, isa.ATTN_SCORE_BITS), f("bits", V))),
            dp.sym.eq(~attn & f("sym", V)),
            dp.red.eq(Mux(attn, Mux(pv, Red.SUM, Red.MAX), f("red", V))),
            dp.red_ir.eq(f("red_ir", V)), dp.rbits.eq(f("rbits", V)),
            dp.vfn.eq(Mux(attn, Mux(pv, VFn.EXP2, VFn.MULS), dp.fn)),
            dp.attn_sc.eq(attn & ~pv), dp.attn_pv.eq(pv),
            dp.s_base.eq(self.lim.depth(Space.KVS) // 2 + (f("b_addr", A) >> f("stride", A))),
            dp.ln.eq(ln), dp.stride.eq(stride),
            dp.nch.eq(Mux(ln == 0, 1, (ln + LANES - 1) >> LANE_SHIFT)),
            dp.ir_a_v.eq(ir[f("ir_a", Op.SAMPLE)]),
            dp.sop_imm.eq(f("imm", Op.SOP)),
            dp.ir_ra.eq(ir[f("a", Op.SOP)[:IR_INDEX_BITS]]),
            dp.ir_rb.eq(ir[f("b", Op.SOP)[:IR_INDEX_BITS]]),
            dp.ir_rc.eq(ir[f("c", Op.SOP)]),
            dp.vi.eq(0), dp.dr.eq(0), dp.dch.eq(0), self.cnt.eq(0), self.drain.eq(0),
            self.ocount.eq(0), self.su_err.eq(0), self.maxe.eq(isa.E_MIN), self.seen.eq(0),
            self.csum.eq(0), self.dcount.eq(0),
        ]
        if self.lim.sdram:
            latch_transfer_operands(self)
        with m.If(dp.op == Op.SOP):
            m.d.sync += [dp.a_sp.eq(f("s_space", Op.SOP)),
                         dp.a_base.eq(f("s_addr", Op.SOP) +
                                      Mux(f("dyn_sel", Op.SOP) != Dyn.NONE, dyn, 0))]

    def _dispatch(self):
        """OPERANDS' next state: BAD_OPCODE for an opcode past XFER (ATTN without SDRAM) or a function code
        past its class's enum (as decoding is); NEXT for NOP and a skipped instruction
        (``gen_only`` while feeding, a GREEDY/SAMPLED condition not met)."""
        m, dp, op, fn, f = self.m, self.dp, self.dp.op, self.dp.fn, self.dp.field
        cond = f("cond")
        skip = ((f("gen_only") & ~dp.gen) | ((cond == Cond.GREEDY) & dp.sampling) |
                ((cond == Cond.SAMPLED) & ~dp.sampling))
        fn_ok = Signal()
        m.d.comb += fn_ok.eq(1)
        with m.Switch(op):
            for o, e in isa.FN_ENUMS.items():
                with m.Case(o):
                    m.d.comb += fn_ok.eq(fn <= max(e))
        # XFER is an opcode only of a machine with SDRAM (without, the test is the one of
        # before XFER existed)
        with m.If(op > max(Op) if self.lim.sdram else op >= Op.XFER):
            self.fail(MachineStatus.BAD_OPCODE)
        with m.Elif(op == Op.END):
            m.next = "END"
        with m.Elif(skip | (op == Op.NOP)):
            m.next = "NEXT"
        with m.Elif(~fn_ok):
            self.fail(MachineStatus.BAD_OPCODE)
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
                with m.Case(Op.ATTN):           # SCORES loads its query as DOT does
                    with m.If(fn == AttnFn.PV):
                        m.next = "ATTN_PV"
                    with m.Else():
                        m.next = "DOT_Q"
                if self.lim.sdram:
                    with m.Case(Op.XFER):
                        m.next = "XFER"

    def _next_end_states(self):
        """NEXT (pc + 1 and its fetch in one cycle, then LATCH) and END (the step's
        cycles into CYCLES, the next position or the run's end)."""
        m, dp, lim = self.m, self.dp, self.lim
        with m.State("NEXT"):               # pc + 1 and its fetch in one cycle
            fa = dp.fa + 1
            if lim.sdram:                   # PROG's instructions in turn (overlay.py)
                fa = Mux(dp.fa == lim.prog_words - 1, 0, fa)
            m.d.comb += [dp.rd_a_sp.eq(Space.PROG), dp.rd_a.eq(fa << 1)]
            m.d.sync += [dp.pc.eq(dp.pc + 1), dp.fa.eq(fa)]
            with m.If(dp.pc + 1 >= dp.pc_limit):
                m.d.sync += [dp.status.eq(MachineStatus.PROG_END), dp.err_pc.eq(dp.pc + 1),
                             dp.err_pos.eq(dp.pos)]
                m.next = "FINISH"
            with m.Else():
                m.next = "LATCH"

        with m.State("END"):
            if self.lim.sdram:          # the step ends when its last transfer has
                with m.If(~dp.xu.busy):
                    self._end_step()
            else:
                self._end_step()

    def _end_step(self):
        """END's cycle: the step's cycles into CYCLES, the next position or FINISH."""
        m, dp = self.m, self.dp
        m.d.comb += [dp.wr_sp.eq(Space.CYCLES), dp.wr_addr.eq(dp.pos),
                     dp.wr_data.eq(dp.step_cycles), dp.wr_en.eq(1)]
        m.d.sync += [dp.total.eq(dp.total + dp.step_cycles), dp.in_step.eq(0),
                     dp.pos.eq(dp.pos + 1), dp.n_done.eq(dp.n_done + dp.gen)]
        with m.If(dp.pos >= dp.last_pos):
            m.next = "FINISH"
        with m.Else():
            m.next = "STEP_START"

    # --- VOP, SVOP, SOP ------------------------------------------------------------------

    def _vop_state(self):
        """VOP: issue one element a cycle into the VOP pipeline (ROT: A's partner on
        ``rd_a2``, B's cos/sin at ``i mod n/2``), then drain it (VOP_STAGES + 2 cycles)
        and write the reduction's IR."""
        m, dp = self.m, self.dp
        vi, n, half, first_half = dp.vi, dp.n, dp.half, dp.first_half
        with m.State("VOP"):
            with m.If(vi < n):
                j = Mux(first_half, vi, vi - half)
                m.d.comb += [dp.v_issue.eq(1), dp.rd_a.eq(dp.a_base + vi),
                             dp.rd_b.eq(dp.b_base + vi)]
                with m.If(dp.fn == isa.VFn.ROT):
                    m.d.comb += [dp.rd_a2.eq(dp.a_base + Mux(first_half, vi + half, vi - half)),
                                 dp.rd_b.eq(dp.b_base + j), dp.rd_b2.eq(dp.b_base + j + half)]
                m.d.sync += vi.eq(vi + 1)
            with m.Else():
                m.d.sync += self.drain.eq(self.drain + 1)
                with m.If(self.drain == VOP_STAGES + 1):
                    m.d.comb += [dp.ir_w_idx.eq(dp.red_ir), dp.ir_w_data.eq(dp.red_value_r),
                                 dp.ir_w_en.eq(dp.red != Red.NONE)]
                    m.next = "NEXT"

    def _su_operand(self, port, word):
        """ScalarUnit operand ``port`` (``a``, ``b``) from a scalar word (scalar_layout)."""
        w = scalar_view(word)
        return [port.m.eq(w.m), port.e.eq(w.e)]

    def _su_result_write(self, en):
        """Write the ScalarUnit's result to D[ocount] (``en``: the write itself)."""
        dp, sres = self.dp, self.sres
        self.m.d.comb += [dp.wr_sp.eq(dp.d_sp), dp.wr_addr.eq(dp.d_base + self.ocount),
                          dp.wr_data.eq(scalar_word(sres.value.m, sres.value.e)),
                          dp.wr_en.eq(en)]

    def _svop_state(self):
        """SVOP: one element a cycle into the ScalarUnit (SMUL, SMUL2: A[i] * B, B a
        vector or SR[b]), its results into D as they come out; the largest exponent of A
        (MAXE) into IR. SCALAR_OVF at the end of the pass if any result left s12."""
        m, dp, su, su_req, sres = self.m, self.dp, self.dp.su, self.su_req, self.sres
        vi, n, fn, d_sp = dp.vi, dp.n, dp.fn, dp.d_sp
        with m.State("SVOP"):
            issue = vi < n
            with m.If(issue):
                m.d.comb += [dp.rd_a.eq(dp.a_base + vi), dp.rd_b.eq(dp.b_base + vi)]
                m.d.sync += vi.eq(vi + 1)
            issued = Signal()
            m.d.sync += issued.eq(issue)
            xw = scalar_view(dp.a_val)
            yw = Mux(dp.b_sp == Space.SR, dp.sr_b, dp.b_val[:SW_BITS])
            smul = (fn == SVFn.SMUL) | (fn == SVFn.SMUL2)
            m.d.comb += [su.i.valid.eq(issued & smul), su_req.op.eq(ScalarOp.MUL),
                         *self._su_operand(su_req.a, dp.a_val), *self._su_operand(su_req.b, yw)]
            with m.If(issued & (xw.e > self.maxe)):
                m.d.sync += self.maxe.eq(xw.e)
            with m.If(su.o.valid):
                self._su_result_write(d_sp != Space.NONE)
                m.d.sync += self.ocount.eq(self.ocount + 1)
                with m.If(scalar_bad(sres)):
                    m.d.sync += self.su_err.eq(1)
            done_all = Mux(smul, self.ocount == n, ~issue & ~issued)
            with m.If(done_all):
                with m.If(self.su_err):
                    self.fail(MachineStatus.SCALAR_OVF)
                with m.Elif(fn == SVFn.SMUL2):
                    m.d.sync += [vi.eq(0), self.ocount.eq(0)]
                    m.next = "SVOP2"
                with m.Else():
                    m.d.comb += [dp.ir_w_idx.eq(dp.red_ir), dp.ir_w_data.eq(self.maxe),
                                 dp.ir_w_en.eq(dp.red == Red.MAXE)]
                    m.next = "NEXT"

    def _svop2_state(self):
        """SVOP2: SMUL2's second multiply, D[j] = D[j] * SR[b2], another pass over D
        (as SVOP's)."""
        m, dp, su, su_req, sres = self.m, self.dp, self.dp.su, self.su_req, self.sres
        vi, n, d_sp = dp.vi, dp.n, dp.d_sp
        with m.State("SVOP2"):
            issue = vi < n
            m.d.comb += dp.rd_a_sp.eq(d_sp)
            with m.If(issue):
                m.d.comb += dp.rd_a.eq(dp.d_base + vi)
                m.d.sync += vi.eq(vi + 1)
            issued = Signal()
            m.d.sync += issued.eq(issue)
            m.d.comb += [su.i.valid.eq(issued), su_req.op.eq(ScalarOp.MUL),
                         *self._su_operand(su_req.a, dp.a_val),
                         *self._su_operand(su_req.b, dp.sr_a)]
            with m.If(su.o.valid):
                self._su_result_write(1)
                m.d.sync += self.ocount.eq(self.ocount + 1)
                with m.If(scalar_bad(sres)):
                    m.d.sync += self.su_err.eq(1)
            with m.If(self.ocount == n):
                with m.If(self.su_err):
                    self.fail(MachineStatus.SCALAR_OVF)
                with m.Else():
                    m.d.comb += [dp.ir_w_idx.eq(dp.red_ir), dp.ir_w_data.eq(self.maxe),
                                 dp.ir_w_en.eq(dp.red == Red.MAXE)]
                    m.next = "NEXT"

    def _sop_state(self):
        """SOP: a ScalarUnit request on SR[a], SR[b] and the IRs (then SOP_WAIT), a load
        of A (then SOP_LOAD), or in its one cycle a store of SR[a] into A, an integer add
        or IMAXE (into IR[d])."""
        m, dp, su, su_req, f = self.m, self.dp, self.dp.su, self.su_req, self.dp.field
        ir_ra, ir_rb, sop_imm = dp.ir_ra, dp.ir_rb, dp.sop_imm
        with m.State("SOP"):
            d = f("d", Op.SOP)
            m.d.comb += [*self._su_operand(su_req.a, dp.sr_a), *self._su_operand(su_req.b, dp.sr_b)]
            kmin, kmax = -(1 << (SU_EXP_BITS - 1)), (1 << (SU_EXP_BITS - 1)) - 1

            def su_start(sop, k=None, x=None):
                m.d.comb += [su.i.valid.eq(1), su_req.op.eq(sop)]
                if k is not None:
                    m.d.comb += su_req.k.eq(Mux(k < kmin, kmin, Mux(k > kmax, kmax, k)))
                if x is not None:
                    m.d.comb += su_req.x.eq(x)
                m.next = "SOP_WAIT"

            with m.Switch(dp.fn):
                with m.Case(SFn.FROM_INT):
                    xv = ir_ra + sop_imm
                    with m.If(xv < 0):
                        self.fail(MachineStatus.SCALAR_OVF)
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
                    m.d.comb += dp.rd_a.eq(dp.a_base)
                    m.next = "SOP_LOAD"
                with m.Case(SFn.STORE):
                    m.d.comb += [dp.wr_sp.eq(dp.a_sp), dp.wr_addr.eq(dp.a_base),
                                 dp.wr_data.eq(dp.sr_a), dp.wr_en.eq(1)]
                    m.next = "NEXT"
                with m.Case(SFn.IADD):
                    m.d.comb += [dp.ir_w_idx.eq(d[:IR_INDEX_BITS]),
                                 dp.ir_w_data.eq(ir_ra + ir_rb + sop_imm), dp.ir_w_en.eq(1)]
                    m.next = "NEXT"
                with m.Case(SFn.IMAXE):
                    sa = scalar_view(dp.sr_a)
                    take = (sa.m != 0) & (ir_rb != 0) & (sa.e > dp.ir_rc)
                    m.d.comb += [dp.ir_w_idx.eq(d[:IR_INDEX_BITS]),
                                 dp.ir_w_data.eq(Mux(take, sa.e, dp.ir_rc)), dp.ir_w_en.eq(1)]
                    m.next = "NEXT"
                with m.Default():
                    m.next = "NEXT"

    def _sop_result_states(self):
        """SOP_WAIT: the ScalarUnit's result into SR[d] (9 cycles for the SOP in all) or
        SCALAR_OVF; SOP_LOAD: A's word into SR[d] (2 cycles in all)."""
        m, dp, su, f = self.m, self.dp, self.dp.su, self.dp.field
        with m.State("SOP_WAIT"):
            with m.If(su.o.valid):
                with m.If(scalar_bad(self.sres)):
                    self.fail(MachineStatus.SCALAR_OVF)
                with m.Else():
                    m.d.comb += [dp.sr_w_idx.eq(f("d", Op.SOP)), dp.sr_w_en.eq(1),
                                 dp.sr_w_data.eq(scalar_word(self.sres.value.m,
                                                             self.sres.value.e))]
                    m.next = "NEXT"
        with m.State("SOP_LOAD"):
            m.d.comb += [dp.sr_w_idx.eq(f("d", Op.SOP)), dp.sr_w_en.eq(1),
                         dp.sr_w_data.eq(dp.a_val[:SW_BITS])]
            m.next = "NEXT"

    # --- MATVEC, DOT, AXPY ---------------------------------------------------------------

    def _matvec_states(self):
        """MATVEC: start the engine (through the driver), then MATVEC_RES writes its
        results into D at one a cycle (a row tile waits in the engine while its rows are
        written)."""
        m, dp, drv, f = self.m, self.dp, self.dp.drv, self.dp.field
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
            m.d.comb += [drv.res.ready.eq(1), dp.wr_sp.eq(f("d_space", Op.MATVEC)),
                         dp.wr_addr.eq(f("d_addr", Op.MATVEC) + r.index),
                         dp.wr_data.eq(r.value.as_signed()), dp.wr_en.eq(drv.res.valid)]
            with m.If(drv.res.valid & r.last):
                m.next = "NEXT"

    def issue_rows(self, n):
        """DOT and ATTN SCORES: while rows remain (``dr < n``), one 32-byte chunk of row
        ``dr`` a cycle into the lanes. Opens an ``m.If``: the caller's ``m.Else()`` (the
        drain) follows it directly."""
        m, dp = self.m, self.dp
        dr, dch = dp.dr, dp.dch
        with m.If(dr < n):
            m.d.comb += [dp.d_issue.eq(1), dp.rd_b.eq(dp.row_addr)]
            with m.If(dch == dp.nch - 1):
                m.d.sync += [dch.eq(0), dr.eq(dr + 1)]
            with m.Else():
                m.d.sync += dch.eq(dch + 1)

    def _dot_states(self):
        """DOT_Q: A's ``len`` bytes into the query buffer (``len + 2`` cycles); DOT: one
        32-byte chunk of a row a cycle into the lanes, each row's sum into D[r] as the
        DOT/AXPY pipeline delivers it, then its drain (``dot_depth + 1`` cycles)."""
        m, dp, cnt, q_wr = self.m, self.dp, self.cnt, self.dp.q_wr
        dl, depth = dp.dl, dp.dot_depth
        with m.State("DOT_Q"):
            m.d.comb += dp.axpy.eq(0)
            qi = Signal(INDEX_BITS)
            qv = Signal()
            m.d.sync += [qi.eq(cnt), qv.eq(cnt < dp.ln)]
            with m.If(cnt < dp.ln):
                m.d.comb += dp.rd_a.eq(dp.a_base + cnt)
            m.d.sync += cnt.eq(cnt + 1)
            m.d.comb += [q_wr.addr.eq(qi >> LANE_SHIFT),
                         q_wr.en.eq(Mux(qv, 1 << qi[:LANE_SHIFT], 0))]
            m.d.comb += [q_wr.data[j].eq(dp.a_val[:8].as_signed()) for j in range(LANES)]
            with m.If(~qv & (cnt > dp.ln)):
                with m.If(dp.op == Op.ATTN):
                    m.next = "ATTN_SCORES"
                with m.Else():
                    m.next = "DOT"
        with m.State("DOT"):
            m.d.comb += dp.axpy.eq(0)
            self.issue_rows(dp.n)
            with m.Else():
                m.d.sync += self.drain.eq(self.drain + 1)
                with m.If(self.drain == depth):
                    m.next = "NEXT"
            with m.If(dl[depth].valid & dl[depth].last):
                m.d.comb += [dp.wr_sp.eq(dp.d_sp), dp.wr_addr.eq(dp.d_base + dl[depth].r),
                             dp.wr_data.eq(dp.lanes.dot), dp.wr_en.eq(1)]

    def _axpy_states(self):
        """AXPY: per chunk of 32 outputs, every row (weight A[r]) a cycle into the lanes'
        accumulators, their drain (``dot_depth + 1`` cycles), then AXPY_WRITE writes the
        chunk's outputs into D, one a cycle. ATTN PV (attention.py) writes its chunks here
        too, then runs its pass again for the next chunk, or writes its sum into IR at its
        last."""
        m, dp, ch_w, drain = self.m, self.dp, self.ch_w, self.drain
        dr, dch, n = dp.dr, dp.dch, dp.n
        with m.State("AXPY"):
            m.d.comb += dp.axpy.eq(1)
            with m.If(dp.ln == 0):                 # no outputs
                m.next = "NEXT"
            with m.Elif(dr < n):
                m.d.comb += [dp.d_issue.eq(1), dp.rd_a.eq(dp.a_base + dr), dp.rd_b.eq(dp.row_addr)]
                m.d.sync += dr.eq(dr + 1)
            with m.Else():
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == dp.dot_depth):
                    m.d.sync += [drain.eq(0), ch_w.eq(0)]
                    m.next = "AXPY_WRITE"
        with m.State("AXPY_WRITE"):
            attn = dp.op == Op.ATTN
            m.d.comb += dp.axpy.eq(1)
            oidx = (dch << LANE_SHIFT) + ch_w
            acc = Array(dp.lanes.acc[j] for j in range(LANES))
            # (only ATTN PV comes here with len 0: no outputs, its sum still to write)
            m.d.comb += [dp.wr_sp.eq(dp.d_sp), dp.wr_addr.eq(dp.d_base + oidx),
                         dp.wr_data.eq(Mux(n == 0, 0, acc[ch_w[:LANE_SHIFT]])),
                         dp.wr_en.eq(dp.ln != 0)]
            m.d.sync += ch_w.eq(ch_w + 1)
            with m.If((ch_w == LANES - 1) | (oidx + 1 >= dp.ln)):
                m.d.sync += [dch.eq(dch + 1), dr.eq(0)]
                with m.If(dch == dp.nch - 1):
                    with m.If(attn):
                        m.d.comb += [dp.ir_w_idx.eq(dp.red_ir), dp.ir_w_data.eq(dp.red_value_r),
                                     dp.ir_w_en.eq(1)]
                    m.next = "NEXT"
                with m.Elif(attn):
                    m.d.sync += dp.vi.eq(0)
                    m.next = "ATTN_PV"
                with m.Else():
                    m.next = "AXPY"

    # --- SAMPLE --------------------------------------------------------------------------

    def _sample_states(self):
        """SAMPLE: TCHECK and EMIT (1 cycle: BAD_TOKEN outside ``0..n-1``; EMIT writes
        TOKENS[pos + 1]), DRAW (the next xorshift draw scaled by IR[a], then the count of
        A's prefix sums at or below it, ``n + 2`` cycles, into IR[d]), TOPK (to
        TOPK_CLEAR when ``top_k`` cuts anything)."""
        m, dp, vi, n, ir_a_v = self.m, self.dp, self.dp.vi, self.dp.n, self.dp.ir_a_v
        with m.State("SAMPLE"):
            with m.Switch(dp.fn):
                with m.Case(SampleFn.TCHECK):
                    with m.If(dp.token >= n):
                        self.fail(MachineStatus.BAD_TOKEN)
                    with m.Else():
                        m.next = "NEXT"
                with m.Case(SampleFn.EMIT):
                    with m.If((ir_a_v < 0) | (ir_a_v >= n)):
                        self.fail(MachineStatus.BAD_TOKEN)
                    with m.Else():
                        m.d.comb += [dp.wr_sp.eq(Space.TOKENS), dp.wr_addr.eq(dp.pos + 1),
                                     dp.wr_data.eq(ir_a_v), dp.wr_en.eq(1)]
                        m.next = "NEXT"
                with m.Case(SampleFn.DRAW):
                    nxt = xorshift32_next(dp.xs)
                    m.d.sync += [dp.xs.eq(nxt), self.draw_r.eq((nxt * ir_a_v) >> 32)]
                    m.next = "DRAW"
                with m.Case(SampleFn.TOPK):
                    with m.If((dp.prm.top_k != 0) & (dp.prm.top_k < n)):
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
                m.d.comb += dp.rd_a.eq(dp.a_base + vi)
                m.d.sync += vi.eq(vi + 1)
            with m.If(issued):
                s_new = self.csum + dp.a_val
                m.d.sync += self.csum.eq(s_new)
                with m.If(s_new <= self.draw_r):
                    m.d.sync += self.dcount.eq(self.dcount + 1)
            with m.If(~issue & ~issued):
                m.d.comb += [dp.ir_w_idx.eq(dp.field("ir_d", Op.SAMPLE)),
                             dp.ir_w_data.eq(self.dcount), dp.ir_w_en.eq(1)]
                m.next = "NEXT"

    def _topk_states(self):
        """TOPK: TOPK_CLEAR clears the mask (``n`` cycles), TOPK_PASS marks the largest
        unmasked A[i] (ties to the lowest i), ``top_k`` passes of ``n + 2`` cycles, then
        TOPK_ZERO zeroes D[i] for every unmarked i (``n + 2`` cycles)."""
        m, dp, k_rd, k_wr = self.m, self.dp, self.dp.k_rd, self.dp.k_wr
        vi, n = dp.vi, dp.n
        with m.State("TOPK_CLEAR"):
            m.d.comb += [k_wr.addr.eq(vi), k_wr.data.eq(0), k_wr.en.eq(1)]
            m.d.sync += vi.eq(vi + 1)
            with m.If(vi == n - 1):
                m.d.sync += [vi.eq(0), self.cnt.eq(0)]
                m.next = "TOPK_PASS"
        with m.State("TOPK_PASS"):
            # one masked argmax pass: the largest unmasked A[i], ties to the lowest i
            issue = vi < n
            issued, ii = Signal(), Signal(INDEX_BITS)
            m.d.sync += [issued.eq(issue), ii.eq(vi)]
            with m.If(issue):
                m.d.comb += [dp.rd_a.eq(dp.a_base + vi), k_rd.addr.eq(vi)]
                m.d.sync += vi.eq(vi + 1)
            with m.If(issued & ~k_rd.data & (~self.seen | (dp.a_val > self.best))):
                m.d.sync += [self.seen.eq(1), self.best.eq(dp.a_val), self.best_i.eq(ii)]
            with m.If(~issue & ~issued):
                m.d.comb += [k_wr.addr.eq(self.best_i), k_wr.data.eq(1), k_wr.en.eq(1)]
                m.d.sync += [vi.eq(0), self.seen.eq(0), self.cnt.eq(self.cnt + 1)]
                with m.If(self.cnt + 1 == dp.prm.top_k):
                    m.next = "TOPK_ZERO"
        with m.State("TOPK_ZERO"):
            issue = vi < n
            issued, ii = Signal(), Signal(INDEX_BITS)
            m.d.sync += [issued.eq(issue), ii.eq(vi)]
            with m.If(issue):
                m.d.comb += k_rd.addr.eq(vi)
                m.d.sync += vi.eq(vi + 1)
            with m.If(issued & ~k_rd.data):
                m.d.comb += [dp.wr_sp.eq(dp.d_sp), dp.wr_addr.eq(dp.d_base + ii),
                             dp.wr_data.eq(0), dp.wr_en.eq(1)]
            with m.If(~issue & ~issued):
                m.next = "NEXT"

    # --- end of a run --------------------------------------------------------------------

    def _finish_states(self):
        """FINISH, then PARAM_WRITE (the run's parameters and result into PARAM, one word
        a cycle), then DONE (``done`` offered until taken)."""
        m, dp, vm, cnt = self.m, self.dp, self.vm, self.cnt
        with m.State("FINISH"):
            m.d.sync += [dp.in_step.eq(0), cnt.eq(0)]
            # (a run stopped by an error waits for its transfer: the streams' words in
            # flight are the transfer's, and uploads write the memories when idle)
            if self.lim.sdram:
                with m.If(~dp.xu.busy):
                    m.next = "PARAM_WRITE"
            else:
                m.next = "PARAM_WRITE"
        with m.State("PARAM_WRITE"):
            res = Signal(result_layout())
            m.d.comb += [res.status.eq(dp.status), res.cycles.eq(dp.total), res.state.eq(dp.xs),
                         res.err_pc.eq(dp.err_pc), res.err_pos.eq(dp.err_pos),
                         res.n_done.eq(dp.n_done)]
            words = {isa.PARAM_WORDS[nm]: getattr(dp.prm, nm) for nm, _, _ in isa.RUN_PARAMS}
            words.update({isa.RESULT_WORDS[nm]: getattr(res, nm) for nm, _, _ in isa.RUN_RESULT})
            with m.Switch(cnt):
                for w, v in words.items():
                    with m.Case(w):
                        m.d.comb += [dp.wr_sp.eq(Space.PARAM), dp.wr_addr.eq(w),
                                     dp.wr_data.eq(v), dp.wr_en.eq(1)]
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == isa.PARAM_DEPTH - 1):
                m.d.sync += [vm.done.payload.eq(res), vm.done.valid.eq(1)]
                m.next = "DONE"
        with m.State("DONE"):
            with m.If(vm.done.ready):
                m.d.sync += vm.done.valid.eq(0)
                m.next = "IDLE"
