"""The datapath of the vector machine (machine.py): its memories and units, the
architectural registers, the decoded operands, the read and write buses every state
shares, and the two pipelines that run beside the sequencer (sequencer.py): VOP and
DOT/AXPY.

Each part is one method, called in the order the Verilog was first generated in: Amaranth
names a signal after the variable it is first stored in and numbers clashing names in the
order the statements use them, so the signals are declared as locals (as they were before
the split) and the statements keep their order. (In a tuple assignment the tracer named
only the last Signal, and only where the compiler kept the stores in order; the few that
this left anonymous before the split, ``$signal`` in the Verilog, are anonymous here by
name.)"""

from amaranth import Array, Cat, Const, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring

from ternary_core.offload import isa
from ternary_core.offload.isa import Op, Red, Space, VFn
from ternary_core.offload.overlay import PC_LIMIT

from ..arith.exp2 import Exp2Unit
from ..arith.pipeline import normalize_left
from ..arith.scalar_unit import ScalarUnit
from ..arith.sigmoid import SigmoidUnit
from .engine_driver import EngineDriver
from .lanes import DotAxpyLanes
from .layouts import LOAD_ADDR_BITS, LOAD_DATA_BITS, SPACE_BITS, field, run_layout, scalar_layout
from .memories import XFER_BITS, SpaceMemory
from .transfer import HALF_SPACES, OUT_SPACES, TransferUnit, xfer_code
from .valu import (OUT_BITS, SH_BITS, V_BITS, clamp_signed, element_value, saturate_dynamic,
                   shift_value)

LANES = isa.DOT_LANES
LANE_SHIFT = LANES.bit_length() - 1      # a row chunk's index <-> its first element
assert LANES == 1 << LANE_SHIFT, LANES
BYTE_SHIFT = 3                           # a byte offset <-> its bit offset
# the memories of the spaces: read ports and words per RAM row (32 for the DOT/AXPY rows)
MEMORIES = {
    Space.VMEM: dict(reads=2), Space.TMEM: dict(reads=2, shared=True),
    Space.EMB: dict(wide=LANES), Space.HEAD: dict(wide=LANES),
    Space.KVK: dict(wide=LANES), Space.KVV: dict(wide=LANES),
    Space.EMBS: dict(lutram=True), Space.HEADS: dict(lutram=True), Space.KVS: {},
    Space.TOKENS: dict(lutram=True), Space.PROG: dict(wide=2), Space.SRINIT: dict(lutram=True),
    Space.CYCLES: dict(lutram=True), Space.PARAM: dict(lutram=True),
}
# LUT RAM in the on-chip build (its block RAM is full), block RAM with SDRAM: there, 384 of
# the build's DPR16X4 and their read muxes were among the most congested routing of the
# placed design (router2's heatmap, docs/sdram.md), and it has the 3 DP16KD they take
SDRAM_BLOCK_RAM = (Space.TOKENS, Space.CYCLES)
ROW_SPACES = (Space.EMB, Space.HEAD, Space.KVK, Space.KVV)   # the lanes' 32-byte rows
IR_BITS, SW_BITS = isa.IR_BITS, isa.SW_BITS
IR_INDEX_BITS = (isa.IR_COUNT - 1).bit_length()
SR_INDEX_BITS = (isa.SR_COUNT - 1).bit_length()
ADDR_BITS = LOAD_ADDR_BITS               # an address in a space
INDEX_BITS = 16                          # pc, pos, token and element counts
SU_EXP_BITS = 16     # the scalar unit's exponents: wider than s12, so leaving s12 is seen
# issue -> operands -> value -> (exp2) -> shift -> saturate -> write, reduce -> sum of squares
VOP_STAGES = 7
VOP_WRITE = 6        # the stage that writes D[i] and reduces (the squares one stage later)
PV_WEIGHT = 7        # the stage at which ATTN PV's weight leaves (its multiply: a stage more)


def memory_kwargs(lim):
    """``{space: SpaceMemory keyword arguments}`` of a machine built with ``lim``: MEMORIES,
    on a machine with SDRAM the transfer's write port on every space XFER moves and
    SDRAM_BLOCK_RAM in block RAM, and VMEM's single-copy bank (``vmem_single``)."""
    out = {}
    for sp, kw in MEMORIES.items():
        info = isa.SPACES[sp]
        # a shared port takes the write's address: only uploads (VM idle) may write
        assert not (kw.get("shared") and info.writable_by_program), sp
        if lim.sdram and (sp in OUT_SPACES or sp == Space.PROG):
            # (TMEM too: a port of its own for the transfer's writes, not the uploads',
            # and rows of an SDRAM word: its int16 words come four to a word)
            kw = {**kw, "xfer": True, "shared": False}
            if sp in HALF_SPACES:
                kw["wide"] = XFER_BITS // info.word_bits
        if lim.sdram and sp in SDRAM_BLOCK_RAM:
            kw = {**kw, "lutram": False}
        if sp == Space.VMEM and lim.vmem_single:
            kw = {**kw, "single_from": lim.vmem_words}
        out[sp] = kw
    return out


def sext(v, bits, is_signed):
    return v[:bits].as_signed() if is_signed else v[:bits]


def scalar_view(word):
    """A scalar word (its low SW_BITS) seen as ``scalar_layout``: ``.m`` and signed ``.e``."""
    return data.View(scalar_layout(), word[:SW_BITS])


def scalar_word(mv, ev):
    """A scalar word (``scalar_layout``) from a mantissa and a (wider) exponent."""
    lay = scalar_layout()
    return Cat(mv[:lay["m"].width], ev[:lay["e"].width])


class MachineDatapath:
    """The VM's storage, units, buses and pipelines, built into ``m`` for ``vm`` (a
    VectorMachine). The sequencer (sequencer.py) reads these attributes and drives the
    buses; everything here runs regardless of the state.

    Shared with the sequencer:

    - memories ``mems`` (a dict by Space), ``sr_rd``/``sr_wr`` (the SR file), ``q_rd``/
      ``q_wr`` (DOT's query buffer), ``k_rd``/``k_wr`` (TOPK's mask); units ``drv``
      (EngineDriver), ``su`` (ScalarUnit), ``ex`` (Exp2Unit), ``sg`` (SigmoidUnit),
      ``lanes`` (DotAxpyLanes);
    - architectural registers (``ir``, ``pc``, ``pos``, ``token``, ``prm``, ``status``, ...)
      and the instruction being decoded, ``cur`` (``op``, ``fn``, ``field()``);
    - decoded operands (``n``, ``a_base``, ``a_sp``, ...), registered by OPERANDS;
    - buses: reads ``rd_a``/``rd_a2`` in space ``rd_a_sp`` (default A's), ``rd_b``/
      ``rd_b2`` in ``rd_b_sp`` (B's); one write ``wr_*``; SR and IR writes ``sr_w_*``/
      ``ir_w_*``; the values read one cycle later: ``a_val``, ``a2_val``, ``b_val``,
      ``b2_val``, ``b_row``, ``sr_a``, ``sr_b``; ``rd_kvs`` (KVS, for ATTN PV);
    - the VOP pipeline (``vi``, ``v_issue``, ``half``, ``first_half``, ``red_clear``,
      ``red_value_r``) and the DOT/AXPY pipeline (``dr``, ``dch``, ``d_issue``,
      ``axpy``, ``row_addr``, ``dl``, ``dot_depth``).
    """

    def __init__(self, m, vm):
        self.m, self.vm, self.lim = m, vm, vm.limits
        self._memories()
        self._units()
        if self.lim.sdram:
            self._transfer_unit()
        self._registers()
        self._decoded_operands()
        self._buses()
        self._memory_ports()
        self._read_values()
        self._register_file_ports()
        self._vop_pipeline()
        self._vop_reductions()
        self._dot_axpy_pipeline()

    def field(self, name, op=None):
        """Field ``name`` of the instruction being decoded (``cur``)."""
        return field(self.cur, name, op)

    # --- storage and units ---------------------------------------------------------------

    def _memories(self):
        """A SpaceMemory per space (MEMORIES), the SR file (LUT RAM, two reads), DOT's
        query buffer (``LANES`` bytes a row) and TOPK's mask (a bit per vocabulary entry).
        All reads take one cycle."""
        m, lim = self.m, self.lim
        mems = {}
        for sp, kw in memory_kwargs(lim).items():
            info = isa.SPACES[sp]
            mems[sp] = SpaceMemory(info.word_bits, lim.depth(sp), name=sp.name, **kw)
            m.submodules[f"mem_{sp.name.lower()}"] = mems[sp]
        m.submodules.sr_file = sr_mem = memory.Memory(shape=unsigned(SW_BITS), depth=isa.SR_COUNT,
                                                      init=[], attrs={"ram_style": "distributed"})
        sr_rd = [sr_mem.read_port(transparent_for=()) for _ in range(2)]
        sr_wr = sr_mem.write_port()
        qbuf_rows = max(1, -(-max(lim.hidden, lim.head_dim, lim.vocab) // LANES))
        m.submodules.qbuf = qmem = memory.Memory(shape=data.ArrayLayout(signed(8), LANES),
                                                 depth=qbuf_rows, init=[])
        # (an ArrayLayout memory counts its write granularity in elements; stored straight
        # into attributes, the ports keep the anonymous names they had before the split)
        self.q_rd, self.q_wr = qmem.read_port(transparent_for=()), qmem.write_port(granularity=1)
        m.submodules.topk_mask = kmem = memory.Memory(shape=1, depth=max(2, lim.vocab), init=[])
        k_rd, k_wr = kmem.read_port(transparent_for=()), kmem.write_port()
        self.mems, self.sr_rd, self.sr_wr = mems, sr_rd, sr_wr
        self.k_rd, self.k_wr = k_rd, k_wr

    def _units(self):
        """The engine driver (its ``cmd``/``acts``/``result`` on the VM's ``engine``
        port), the ScalarUnit, the Exp2Unit, the SigmoidUnit and the DOT/AXPY lanes; the
        units' outputs are never stalled."""
        m, vm = self.m, self.vm
        m.submodules.drv = drv = EngineDriver(vm.engine_config)
        for name in ("cmd", "acts"):
            wiring.connect(m, getattr(drv.engine, name), wiring.flipped(getattr(vm.engine, name)))
        wiring.connect(m, wiring.flipped(vm.engine.result), drv.engine.result)
        m.submodules.su = su = ScalarUnit(exp_bits=SU_EXP_BITS, int_bits=IR_BITS)
        m.submodules.exp2 = ex = Exp2Unit(in_bits=32)
        m.submodules.lanes = lanes = DotAxpyLanes(LANES)
        m.d.comb += [su.o.ready.eq(1), ex.o.ready.eq(1)]
        self.drv, self.su, self.ex, self.lanes = drv, su, ex, lanes
        m.submodules.sigmoid = sg = SigmoidUnit(x_bits=isa.MUL_Y_BITS, z_bits=V_BITS)
        m.d.comb += sg.o.ready.eq(1)
        self.sg = sg

    def _transfer_unit(self):
        """(A device with SDRAM) the transfer unit ``xu`` on the VM's ``sdram`` and
        ``wgt`` ports, and the operands OPERANDS registers for it: ``x_c`` (on-chip word),
        ``x_s`` (SDRAM word) and ``x_n`` (SDRAM words), the dynamic offsets added."""
        m, vm = self.m, self.vm
        wgt_bits = len(vm.wgt.addr)
        m.submodules.xfer = xu = TransferUnit(len(vm.sdram.read_req.payload.addr),
                                              vm.engine_config.word_bytes, wgt_bits, ADDR_BITS)
        wiring.connect(m, xu.sdram, wiring.flipped(vm.sdram))
        wiring.connect(m, xu.wgt, wiring.flipped(vm.wgt))
        self.xu = xu
        self.x_c, self.x_s = Signal(ADDR_BITS), Signal.like(xu.start.payload.s_addr)
        self.x_n = Signal.like(xu.start.payload.n)

    # --- registers -----------------------------------------------------------------------

    def _registers(self):
        """The architectural state: IR, the instruction register ``ins`` (and ``cur``,
        the instruction decoded: ``ins`` itself), pc, pos, the run's parameters and
        result, the xorshift state and the step's cycle counter."""
        m = self.m
        ir = Array(Signal(signed(IR_BITS), name=f"ir{k}") for k in range(isa.IR_COUNT))
        ins = Signal(isa.INSTR_BITS)
        # (anonymous, as before the split)
        pc, pos, token = (Signal(INDEX_BITS, name="$signal") for _ in range(3))
        gen, sampling = Signal(), Signal()
        prm = Signal(run_layout())
        xs = Signal(32)                              # the xorshift32 state
        status, err_pc, err_pos, n_done = (Signal(8), Signal(INDEX_BITS), Signal(INDEX_BITS),
                                            Signal(INDEX_BITS))
        total, step_cycles = Signal(32), Signal(32)
        last_pos = Signal(INDEX_BITS + 1)
        in_step = Signal()

        # The instruction being decoded: the instruction register, loaded from the program
        # memory in the cycle after its fetch (LATCH: the memory's slow output goes into a
        # register before any decoding).
        cur = Signal(isa.INSTR_BITS)
        m.d.comb += cur.eq(ins)

        self.ir, self.ins, self.pc, self.pos, self.token = ir, ins, pc, pos, token
        self.gen, self.sampling, self.prm, self.xs = gen, sampling, prm, xs
        self.status, self.err_pc, self.err_pos, self.n_done = status, err_pc, err_pos, n_done
        self.total, self.step_cycles, self.last_pos, self.in_step = (total, step_cycles,
                                                                      last_pos, in_step)
        self.cur = cur
        self.op, self.fn = self.field("op"), self.field("fn")
        # PROG's instruction at pc: pc itself, or (with SDRAM, where a program longer
        # than PROG streams in segments: offload/overlay.py) pc modulo prog_words; the
        # pc past which the step stops with PROG_END
        self.fa = Signal(range(max(2, self.lim.prog_words)), name="fa") if self.lim.sdram else pc
        self.pc_limit = PC_LIMIT if self.lim.sdram else self.lim.prog_words

    def _decoded_operands(self):
        """The operands OPERANDS registers from the instruction (one cycle before its
        pass starts): sizes, spaces and bases (with the dynamic offset added), the VOP's
        shift, bits and reduction, DOT's length and stride, the IRs the instruction
        names."""
        n = Signal(INDEX_BITS)
        a_base, b_base, d_base = Signal(ADDR_BITS), Signal(ADDR_BITS), Signal(ADDR_BITS)
        a_sp, b_sp, d_sp = Signal(4), Signal(4), Signal(4)
        sh_base = Signal(signed(IR_BITS + 2))
        y_ir = Signal(signed(IR_BITS))
        ln, stride = Signal(15), Signal(4, name="$signal")  # anonymous, as before the split
        nch = Signal(10)                             # 32-byte chunks of a row
        bits, sym, red, red_ir, rbits = Signal(7), Signal(), Signal(3), Signal(4), Signal(5)
        ir_a_v = Signal(signed(IR_BITS))
        sop_imm = Signal(signed(32))
        ir_ra, ir_rb, ir_rc = (Signal(signed(IR_BITS)), Signal(signed(IR_BITS)),
                               Signal(signed(IR_BITS)))
        # the VOP pipeline's function (VOP: fn; ATTN SCORES: MULS; ATTN PV: EXP2), which
        # ATTN pass runs through it, and PV's first V-scale address in KVS
        vfn, attn_sc, attn_pv = Signal(4), Signal(), Signal()
        s_base = Signal(ADDR_BITS)
        self.vfn, self.attn_sc, self.attn_pv, self.s_base = vfn, attn_sc, attn_pv, s_base
        self.n, self.a_base, self.b_base, self.d_base = n, a_base, b_base, d_base
        self.a_sp, self.b_sp, self.d_sp = a_sp, b_sp, d_sp
        self.sh_base, self.y_ir, self.ln, self.stride, self.nch = sh_base, y_ir, ln, stride, nch
        self.bits, self.sym, self.red, self.red_ir, self.rbits = bits, sym, red, red_ir, rbits
        self.ir_a_v, self.sop_imm = ir_a_v, sop_imm
        self.ir_ra, self.ir_rb, self.ir_rc = ir_ra, ir_rb, ir_rc

    # --- buses ---------------------------------------------------------------------------

    def _buses(self):
        """The shared read and write buses; a state drives what it uses (combinationally),
        the rest stay 0. The read spaces default to the decoded A and B spaces."""
        m = self.m
        rd_a_sp, rd_b_sp = Signal(SPACE_BITS), Signal(SPACE_BITS)
        rd_a, rd_a2, rd_b, rd_b2 = (Signal(ADDR_BITS, name=nm)
                                    for nm in ("rd_a", "rd_a2", "rd_b", "rd_b2"))
        wr_sp, wr_addr, wr_data, wr_en = (Signal(SPACE_BITS), Signal(ADDR_BITS),
                                          Signal(LOAD_DATA_BITS), Signal())
        idle = Signal()
        peek_addr = Signal(ADDR_BITS)
        # ATTN PV reads the V scales on KVS's port while B (rd_b) reads the V rows
        rd_kvs, rd_kvs_en = Signal(ADDR_BITS, name="rd_kvs"), Signal()
        self.rd_kvs, self.rd_kvs_en = rd_kvs, rd_kvs_en
        m.d.comb += [rd_a_sp.eq(self.a_sp), rd_b_sp.eq(self.b_sp)]
        self.rd_a_sp, self.rd_b_sp = rd_a_sp, rd_b_sp
        self.rd_a, self.rd_a2, self.rd_b, self.rd_b2 = rd_a, rd_a2, rd_b, rd_b2
        self.wr_sp, self.wr_addr, self.wr_data, self.wr_en = wr_sp, wr_addr, wr_data, wr_en
        self.idle, self.peek_addr = idle, peek_addr

    def _memory_ports(self):
        """Every memory's ports: while idle, port 0 reads for ``peek`` and the write takes
        ``load``; while running, port 0 reads ``rd_a`` if the memory is A's space, else
        B's (``rd_b2`` on a two-port memory; KVS's reads ``rd_kvs`` while ``rd_kvs_en``:
        ATTN PV's V scales), port 1 reads ``rd_a2`` if only A is in the memory, else
        ``rd_b``; the write takes the ``wr_*`` bus."""
        m = self.m
        ld = self.vm.load.payload
        for sp, mem in self.mems.items():
            two = mem.reads == 2
            with m.If(self.idle):
                m.d.comb += mem.r_addr(0).eq(self.peek_addr)
            if mem.xfer:          # an XFER OUT reads while the sequencer waits for it
                with m.Elif(self.xu.reading & (self.xu.space == xfer_code(sp))):
                    m.d.comb += mem.r_addr(0).eq(self.xu.r_addr)
            with m.Elif(self.rd_a_sp == sp):
                m.d.comb += mem.r_addr(0).eq(self.rd_a)
            if sp == Space.KVS:
                with m.Elif(self.rd_kvs_en):
                    m.d.comb += mem.r_addr(0).eq(self.rd_kvs)
            with m.Else():
                m.d.comb += mem.r_addr(0).eq(self.rd_b2 if two else self.rd_b)
            if two:
                m.d.comb += mem.r_addr(1).eq(Mux((self.rd_a_sp == sp) & (self.rd_b_sp != sp),
                                                 self.rd_a2, self.rd_b))
            with m.If(self.idle):
                m.d.comb += [mem.w_addr.eq(ld.addr), mem.w_data.eq(ld.data),
                             mem.w_en.eq(self.vm.load.valid & (ld.space == sp))]
            with m.Else():
                m.d.comb += [mem.w_addr.eq(self.wr_addr), mem.w_data.eq(self.wr_data),
                             mem.w_en.eq(self.wr_en & (self.wr_sp == sp))]
        if self.lim.sdram:
            self._transfer_ports()

    def _transfer_ports(self):
        """The transfer unit's writes (into the memory's ``x_*``, ready when the VM does
        not write that memory in the cycle) and reads (port 0's SDRAM word)."""
        m, xu = self.m, self.xu
        with m.Switch(xu.space):
            for sp, mem in self.mems.items():
                if mem.xfer:
                    with m.Case(xfer_code(sp)):
                        m.d.comb += [xu.w_ready.eq(~mem.w_en), xu.r_data.eq(mem.x_rdata)]
        for sp, mem in self.mems.items():
            if mem.xfer:
                m.d.comb += [mem.x_addr.eq(xu.w_addr), mem.x_data.eq(xu.w_data),
                             mem.x_en.eq(xu.w_en & (xu.space == xfer_code(sp)))]

    def _read_value(self, port, space):
        """The value read on ``port`` (0, 1) of ``space`` (a Signal), sign-extended."""
        m = self.m
        out = Signal(signed(V_BITS), name=f"rv{port}")
        with m.Switch(space):
            for sp, mem in self.mems.items():
                if port >= mem.reads:
                    continue
                info = isa.SPACES[sp]
                with m.Case(sp):
                    m.d.comb += out.eq(sext(mem.r_data(port), info.word_bits, info.signed))
        return out

    def _two_port(self, space):
        return Cat(*(space == sp for sp, mem in self.mems.items() if mem.reads == 2)).any()

    def _read_values(self):
        """The read muxes, one cycle after the address: ``a_val`` (A's space, port 0),
        ``a2_val`` (port 1: ROT's partner), ``b_val`` (B's, on port 1 of a two-port
        memory), ``b2_val`` (port 0: ROT's sin) and ``b_row`` (a whole 32-byte row of a
        row space, for the lanes)."""
        m, rd_a_sp, rd_b_sp = self.m, self.rd_a_sp, self.rd_b_sp
        a_val = self._read_value(0, rd_a_sp)
        a2_val = self._read_value(1, rd_a_sp)
        b_val = Signal(signed(V_BITS))
        m.d.comb += b_val.eq(Mux(self._two_port(rd_b_sp), self._read_value(1, rd_b_sp),
                                 self._read_value(0, rd_b_sp)))
        b2_val = self._read_value(0, rd_b_sp)
        b_row = Signal(8 * LANES)
        with m.Switch(rd_b_sp):
            for sp in ROW_SPACES:
                with m.Case(sp):
                    m.d.comb += b_row.eq(self.mems[sp].r_row(0))
        self.a_val, self.a2_val, self.b_val, self.b2_val, self.b_row = (a_val, a2_val, b_val,
                                                                        b2_val, b_row)

    def _register_file_ports(self):
        """The SR file's reads follow the decoded instruction: port 0 reads SR[a] (SOP) or
        SR[b2] (SVOP), port 1 SR[b] (SOP) or SR[b_addr] (VOP, SVOP), valid from the state
        after OPERANDS on (``sr_a``, ``sr_b``). One SR write and one IR write a cycle
        (``sr_w_*``, ``ir_w_*``: by whichever state finishes); IR[0] ignores writes."""
        m, cur = self.m, self.cur
        sr_rd, sr_wr = self.sr_rd, self.sr_wr
        sr_a = Signal(SW_BITS)
        sr_b = Signal(SW_BITS)
        m.d.comb += [sr_a.eq(sr_rd[0].data), sr_b.eq(sr_rd[1].data)]
        m.d.comb += [sr_rd[0].addr.eq(Mux(field(cur, "op") == Op.SVOP,
                                          field(cur, "b2", Op.SVOP),
                                          field(cur, "a", Op.SOP))),
                     sr_rd[1].addr.eq(Mux(field(cur, "op") == Op.SOP,
                                          field(cur, "b", Op.SOP),
                                          field(cur, "b_addr", Op.VOP)[:SR_INDEX_BITS]))]
        sr_w_idx, sr_w_data, sr_w_en = Signal(SR_INDEX_BITS), Signal(SW_BITS), Signal()
        m.d.comb += [sr_wr.addr.eq(sr_w_idx), sr_wr.data.eq(sr_w_data), sr_wr.en.eq(sr_w_en)]

        ir_w_idx, ir_w_data, ir_w_en = Signal(IR_INDEX_BITS), Signal(signed(IR_BITS)), Signal()
        with m.If(ir_w_en & (ir_w_idx != isa.IR_ZERO)):
            m.d.sync += self.ir[ir_w_idx].eq(ir_w_data)
        self.sr_a, self.sr_b = sr_a, sr_b
        self.sr_w_idx, self.sr_w_data, self.sr_w_en = sr_w_idx, sr_w_data, sr_w_en
        self.ir_w_idx, self.ir_w_data, self.ir_w_en = ir_w_idx, ir_w_data, ir_w_en

    # --- the VOP pipeline ----------------------------------------------------------------

    def _vop_pipeline(self):
        """The VOP pipeline: the VOP state issues element ``vi`` (``v_issue``: its reads
        on the buses), the pipeline writes D[vi] VOP_WRITE cycles later (``vop_write``,
        ``vop_out``) and squares it one cycle after that (``vop_sq``). ``vl[k]`` holds
        the element at stage k (valid, index, ``fh``: in ROT's first half). At stage 1 the
        memories' outputs are registered (``_vop_operands``), at 2 the element's value
        (valu.element_value) or the Exp2Unit's or SigmoidUnit's inputs are formed, 3 and 4
        carry the value (the two units' two cycles), 4 shifts it, 5 saturates it, 6 writes
        it. The function is ``vfn`` (OPERANDS: the VOP's, or an ATTN pass's): ATTN SCORES
        runs its dots through it as MULS (attention.py), ATTN PV its scores as EXP2, with
        the V scale's multiply at 4 and so the shift at 5, the saturation at 6 and the
        weight out at PV_WEIGHT (7); PV writes no D[i] and SUMs the exp2 values."""
        m, n, fn, ex, sg = self.m, self.n, self.vfn, self.ex, self.sg
        vi = Signal(INDEX_BITS)                  # issue index
        v_issue = Signal()
        half = n >> 1
        first_half = vi < half
        vl = [Signal(data.StructLayout({"valid": 1, "idx": INDEX_BITS, "fh": 1}),
                     name=f"vop_s{k}")
              for k in range(VOP_STAGES + 1)]
        m.d.comb += [vl[0].valid.eq(v_issue), vl[0].idx.eq(vi), vl[0].fh.eq(first_half)]
        for k in range(VOP_STAGES):
            m.d.sync += vl[k + 1].eq(vl[k])
        ox, oy, op2, oc, os_, ow = self._vop_operands()
        v1, d1 = element_value(m, fn, ox, oy, op2, oc, os_, vl[2].fh)
        # MULS: B is a scalar word, its exponent adds to the shift (ATTN PV: the V scale's)
        ye = Mux(fn == VFn.MULS, scalar_view(oy).e, Mux(self.attn_pv, scalar_view(ow).e, 0))
        sh_full = self.sh_base - ye
        sh1 = clamp_signed(m, sh_full, SH_BITS, "vop_sh")
        is_exp = (fn == VFn.EXP2) | (fn == VFn.EXP2X)
        m.d.comb += [ex.i.valid.eq(vl[2].valid & is_exp), ex.i.payload.d.eq(d1)]
        is_sig = fn == VFn.SIGMUL
        m.d.comb += [sg.i.valid.eq(vl[2].valid & is_sig),
                     sg.i.payload.x.eq(ox[:isa.MUL_Y_BITS].as_signed()), sg.i.payload.z.eq(oy)]
        r1v, r1s = Signal(signed(V_BITS)), Signal(signed(SH_BITS))
        r2v, r2s = Signal(signed(V_BITS)), Signal(signed(SH_BITS))
        m.d.sync += [r1v.eq(v1), r1s.eq(sh1), r2v.eq(r1v), r2s.eq(r1s)]
        v3 = Mux(is_exp, ex.o.payload.value, Mux(is_sig, sg.o.payload.value, r2v))
        # ATTN PV: the exp2 weight e times the V scale's mantissa in a stage of its own
        # (stage 4), so PV shifts at 5, saturates at 6 and leaves at 7, a stage after the
        # VOPs; e itself goes on to the SUM at stage 6
        pv_m3, pv_m4 = Signal(isa.SW_M_BITS, name="pv_m3"), Signal(isa.SW_M_BITS, name="pv_m4")
        pv_p5 = Signal(2 * isa.SW_M_BITS, name="pv_p5")
        pv_s3 = Signal(signed(SH_BITS), name="pv_s3")
        pv_e5, pv_e6 = Signal(16, name="pv_e5"), Signal(16, name="pv_e6")
        m.d.sync += [pv_m3.eq(scalar_view(ow).m), pv_m4.eq(pv_m3),
                     pv_p5.eq(ex.o.payload.value * pv_m4), pv_s3.eq(r2s),
                     pv_e5.eq(ex.o.payload.value), pv_e6.eq(pv_e5)]
        r4 = Signal(signed(V_BITS + OUT_BITS))       # left shifts stop where all saturate
        m.d.sync += r4.eq(shift_value(Mux(self.attn_pv, pv_p5, v3),
                                      Mux(self.attn_pv, pv_s3, r2s)))
        out = Signal(signed(IR_BITS), name="vop_out_r")
        m.d.sync += out.eq(saturate_dynamic(m, r4, self.bits, self.sym))
        sq = Signal(IR_BITS, name="vop_sq")              # the square at stage VOP_STAGES
        m.d.sync += sq.eq((out * out)[:IR_BITS])
        self.vi, self.v_issue, self.vl = vi, v_issue, vl
        self.half, self.first_half = half, first_half
        self.vop_out, self.vop_sq, self.pv_e6 = out, sq, pv_e6
        # (ATTN PV writes D from the lanes, after the pass)
        self.vop_write = vl[VOP_WRITE].valid & (self.d_sp != Space.NONE) & ~self.attn_pv
        self.vop_waddr = self.d_base + vl[VOP_WRITE].idx

    def _vop_operands(self):
        """VOP stage 1: A[i] (``vop_x``), B (``vop_y``: the B space's element, SR[b],
        IR[b] or 0), ROT's partner (``vop_p``) and cos/sin (``vop_c``, ``vop_s``),
        registered as read (the memories' outputs go nowhere else). ATTN SCORES: x is the
        lanes' dot and y the key's scale (D's word, on A's port); ATTN PV: x is the score,
        y the max score (IR) and ``vop_w`` the V scale (KVS)."""
        m = self.m
        y = Signal(signed(V_BITS))
        with m.Switch(self.b_sp):
            with m.Case(Space.SR):
                m.d.comb += y.eq(self.sr_b)
            with m.Case(Space.IR):
                m.d.comb += y.eq(self.y_ir)
            with m.Case(Space.NONE):
                m.d.comb += y.eq(0)
            with m.Default():
                m.d.comb += y.eq(self.b_val)
        ox, oy, op2 = (Signal(signed(V_BITS), name=nm) for nm in ("vop_x", "vop_y", "vop_p"))
        oc = Signal(signed(isa.MUL_Y_BITS), name="vop_c")
        os_ = Signal(signed(isa.MUL_Y_BITS), name="vop_s")
        ow = Signal(isa.SW_BITS, name="vop_w")
        m.d.sync += [ox.eq(Mux(self.attn_sc, self.lanes.dot, self.a_val)),
                     oy.eq(Mux(self.attn_sc, self.a_val, Mux(self.attn_pv, self.y_ir, y))),
                     ow.eq(self.mems[Space.KVS].r_data(0)), op2.eq(self.a2_val),
                     oc.eq(self.b_val[:isa.MUL_Y_BITS].as_signed()),
                     os_.eq(self.b2_val[:isa.MUL_Y_BITS].as_signed())]
        return ox, oy, op2, oc, os_, ow

    def _vop_reductions(self):
        """The VOP's reductions over the written values (cleared by ``red_clear``, in
        OPERANDS): max |v|, sum, max and its index at stage VOP_WRITE, the sum of squares
        one stage later. ``red_value_r`` is the one ``red`` asks for (NORM: the bit length
        of max |v| less ``rbits - 1``), registered: the IR write one cycle later."""
        m, out, sq, vl = self.m, self.vop_out, self.vop_sq, self.vl
        maxabs = Signal(IR_BITS + 1)
        rsum, rsq = Signal(signed(IR_BITS)), Signal(signed(IR_BITS))
        rmax, rarg = Signal(signed(IR_BITS)), Signal(INDEX_BITS)
        red_clear = Signal()
        red_hold = Signal()        # ATTN PV's passes after the first: the sum is complete
        absout = Mux(out < 0, -out, out)
        with m.If(red_clear):
            m.d.sync += [maxabs.eq(0), rsum.eq(0), rsq.eq(0), rmax.eq(-(1 << (IR_BITS - 1))),
                         rarg.eq(0)]
        with m.Else():
            with m.If(vl[VOP_WRITE].valid & ~red_hold):
                m.d.sync += rsum.eq(rsum + Mux(self.attn_pv, self.pv_e6, out))
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
        with m.Switch(self.red):
            with m.Case(Red.MAXABS):
                m.d.comb += red_value.eq(maxabs)
            with m.Case(Red.NORM):
                m.d.comb += red_value.eq(ma_bl - (self.rbits - 1))
            with m.Case(Red.SUM):
                m.d.comb += red_value.eq(rsum)
            with m.Case(Red.SUMSQ):
                m.d.comb += red_value.eq(rsq)
            with m.Case(Red.MAX):
                m.d.comb += red_value.eq(rmax)
            with m.Case(Red.ARGMAX):
                m.d.comb += red_value.eq(rarg)
        self.red_clear, self.red_hold, self.red_value_r = red_clear, red_hold, red_value_r

    def vop_writes(self):
        """The VOP pipeline's write of D[i] (and of ACT, through the engine driver):
        after the sequencer, so that it wins over the states' writes of the same cycle."""
        m, out = self.m, self.vop_out
        with m.If(self.vop_write):
            m.d.comb += [self.wr_sp.eq(self.d_sp), self.wr_addr.eq(self.vop_waddr),
                         self.wr_data.eq(out), self.wr_en.eq(1)]
        m.d.comb += [self.drv.act_index.eq(self.vop_waddr), self.drv.act_data.eq(out[:8]),
                     self.drv.act_en.eq(self.vop_write & (self.d_sp == Space.ACT))]

    # --- the DOT/AXPY pipeline -----------------------------------------------------------

    def _dot_axpy_pipeline(self):
        """The DOT/AXPY pipeline: DOT and AXPY issue a chunk (``d_issue``: row ``dr``,
        chunk ``dch``, read at ``row_addr``); stage 1 has the row (shifted to the
        chunk's first byte) and the query bytes, registered into the lanes' inputs at
        stage 2 (lanes past ``ln`` are 0); the lanes' sum is ``dot_depth`` cycles after
        the issue (``dl[k]``: the chunk at stage k, ``first``/``last`` of its sum). AXPY's
        weight is A[r] as read; ATTN PV's the VOP pipeline's output."""
        m, lanes, n = self.m, self.lanes, self.n
        dot_depth = 2 + lanes.latency    # issue -> row read -> lane inputs -> the lanes' sum
        dr, dch = Signal(INDEX_BITS), Signal(10)           # issue: row, chunk
        d_issue = Signal()
        axpy = Signal()
        d_off = Signal(LANE_SHIFT)
        dl = [Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "r": INDEX_BITS,
                                        "ch": 10}),
                     name=f"dot_s{k}") for k in range(dot_depth + 1)]
        row_addr = self.b_base + (dr << self.stride) + (dch << LANE_SHIFT)
        m.d.comb += [dl[0].valid.eq(d_issue), dl[0].first.eq(Mux(axpy, dr == 0, dch == 0)),
                     dl[0].last.eq(Mux(axpy, dr == n - 1, dch == self.nch - 1)),
                     dl[0].r.eq(dr), dl[0].ch.eq(dch)]
        for k in range(dot_depth):
            m.d.sync += dl[k + 1].eq(dl[k])
        m.d.sync += d_off.eq(row_addr[:LANE_SHIFT])
        m.d.comb += self.q_rd.addr.eq(dch)
        shifted_row = (self.b_row >> Cat(Const(0, BYTE_SHIFT), d_off))[:8 * LANES]
        lane_ok = [(dl[1].ch * LANES + j) < self.ln for j in range(LANES)]
        # the lanes' inputs go into registers first (the rows' RAM outputs and read muxes
        # are slow): the lanes take a beat at stage 2
        for j in range(LANES):
            m.d.sync += [lanes.a[j].eq(Mux(lane_ok[j], self.q_rd.data[j], 0)),
                         lanes.b[j].eq(Mux(lane_ok[j], shifted_row[8 * j:8 * j + 8].as_signed(),
                                           0))]
        # AXPY's weight as read (A[r]); ATTN PV's from the VOP pipeline's last stage
        m.d.sync += lanes.w.eq(Mux(self.attn_pv, self.vop_out[:len(lanes.w)],
                                   self.a_val[:len(lanes.w)]).as_signed())
        m.d.comb += [lanes.en.eq(dl[2].valid), lanes.axpy.eq(axpy), lanes.first.eq(dl[2].first)]
        self.dot_depth, self.dr, self.dch = dot_depth, dr, dch
        self.d_issue, self.axpy = d_issue, axpy
        self.dl, self.row_addr = dl, row_addr
