"""The program compiler of the whole-model device: an :class:`~ternary_core.integer.IntegerModel`
becomes memory images and a straight-line program for one decode step (docs/device-isa.md).

Each op of :meth:`IntegerRunner._forward <ternary_core.integer.runner.IntegerRunner._forward>`
maps to a fixed instruction sequence whose arithmetic is the golden op's, primitive for
primitive; every instruction carries a human name (``"layer 2 attn head 1: scores"``)
for ``--check``. The memory map (:class:`MemoryMap`) is shared by the program and the
images, so the two cannot disagree.
"""

from dataclasses import dataclass, field

import numpy as np

from ..errors import TernaryError
from ..integer import ops
from ..integer.fixed import SIGMOID_FRAC_BITS, SIGMOID_ONE, scalar_from_int
from ..model import names
from ..model.names import GATE_UP, QKV
from .isa import (ATTN_SCORE_BITS, FN_ENUMS, IR_COUNT, SDRAM_WORD_BYTES, SR_INV_T, AttnFn, Cond,
                  Dyn, DynSrc, Instr, Op, Red, SampleFn, SFn, Space, SVFn, VFn, XFn, prog_words)
from . import overlay
from .schedule import hoist_transfers
from .limits import DEFAULT_ENGINE, TMEM_PER_WORD, VM_ACTIVATIONS, DeviceLimits
from .memory_map import LIN_SCALE_WORDS, MemoryMap, log2_exact

# Integer registers by role (IR[0] is zero)
assert ATTN_SCORE_BITS == ops.SCORE_BITS
IR_S, IR_SS, IR_S2, IR_AMAX, IR_ZMAX, IR_TOT, IR_EMAX, IR_TOP = 1, 2, 3, 4, 5, 6, 7, 8
IR_G0, IR_G1, IR_G2, IR_GT, IR_ID, IR_LMAX, IR_LSUM = 9, 10, 11, 12, 13, 14, 15
assert IR_LSUM < IR_COUNT
SIGMOID_ONE_BITS = SIGMOID_ONE.bit_length() - 1     # the sigmoid's Q1.15: 1.0 = 2**15


class _Emitter:
    """Builds the instruction list and allocates scalar registers for the program of
    ``im`` laid out by ``mm``; the ops of the integer decode (norm, quantizers, rescale)
    as fixed instruction sequences."""

    def __init__(self, mm, im):
        self.mm, self.im = mm, im
        self.ins = []
        self.sr_names = {}
        self.sr_init = {}       # index -> (m, e)
        self.gen = 0

    # --- registers
    def const(self, key, sc):
        """An SRINIT constant (one register per distinct key)."""
        if key not in self.sr_names:
            i = len(self.sr_names) + 1
            self.sr_names[key] = i
            self.sr_init[i] = (int(np.ravel(sc.m)[0]), int(np.ravel(sc.e)[0]))
        return self.sr_names[key]

    def lin_scale(self, i, n):
        """The SR holding the weight scale of layer ``i``'s BitLinear ``n`` (a
        names.BITLINEARS entry): on chip an SRINIT constant; streamed, a register loaded
        from the layer's scales in VMEM (``ls``, fetched with its gains), so that the SR
        file does not grow with the layers."""
        lin = names.layer(i) + n
        if self.mm.sd is None:
            return self.const(("lin", lin), self.im.linear_scale[lin])
        reg = self.sr("lin")
        self.sop(f"layer {i} {n.split('.')[-1]}: load the weight scale", SFn.LOAD, d=reg,
                 s=(Space.VMEM, self.mm.lin_scales_at(i, n)))
        return reg

    def sr(self, key):
        """A temporary scalar register named ``key`` (allocated once, reused)."""
        if key not in self.sr_names:
            self.sr_names[key] = len(self.sr_names) + 1
        return self.sr_names[key]

    # --- instructions
    def emit(self, op, name, **f):
        f.setdefault("gen_only", self.gen)
        self.ins.append(Instr(op, name, **f))

    def vop(self, name, fn, n, a, b=(Space.NONE, 0), d=(Space.NONE, 0), *, sh_imm=0, sh_ir=0,
            bits=40, red=Red.NONE, red_ir=0, rbits=0, sym=0, npos=0, dyn=None, cond=Cond.ALWAYS):
        self.emit(Op.VOP, name, fn=fn, n=n, npos=npos, a_space=a[0], a_addr=a[1],
                  b_space=b[0], b_addr=b[1], d_space=d[0], d_addr=d[1], sh_imm=sh_imm,
                  sh_ir=sh_ir, bits=bits, red=red, red_ir=red_ir, rbits=rbits, sym=sym,
                  cond=cond, **self._dyn(dyn))

    @staticmethod
    def _dyn(dyn):
        if dyn is None:
            return {}
        sel, src, k = dyn
        return {"dyn_sel": sel, "dyn_src": src, "dyn_k": k}

    def sop(self, name, fn, d=0, a=0, b=0, c=0, imm=0, s=(Space.NONE, 0), dyn=None):
        self.emit(Op.SOP, name, fn=fn, d=d, a=a, b=b, c=c, imm=imm, s_space=s[0], s_addr=s[1],
                  **self._dyn(dyn))

    def V(self, region, off=0):
        return (Space.VMEM, self.mm.vmem[region] + off)

    # --- ops of the integer decode
    def quant_tail(self, name, src, n, out, out_dyn, k_name):
        """quant_int8 of a row already normalized to 17 bits at ``src`` (IR_AMAX holds
        max|row|): the 127/max multiplier and the MULS to int8; returns the SR of the
        scale before the range shift (``amax/127``)."""
        amax, tt, k = self.sr(k_name + ".amax"), self.sr(k_name + ".t"), self.sr(k_name + ".k")
        self.sop(f"{name}: max to scalar", SFn.FROM_INT, d=amax, a=IR_AMAX)
        self.sop(f"{name}: 1/max", SFn.RECIP, d=tt, a=amax)
        self.sop(f"{name}: 127/max", SFn.MUL, d=k, a=tt, b=self.const("127", scalar_from_int(127)))
        self.vop(f"{name}: quantize to int8", VFn.MULS, n, src, (Space.SR, k), out, bits=8,
                 sym=1, dyn=out_dyn)
        q = self.sr(k_name + ".q")
        self.sop(f"{name}: max/127", SFn.MUL, d=q, a=amax, b=self.const("1/127", ops.INV_127))
        return q

    def norm(self, name, norm_name, x, n, xs, out, r_out, ranged=False):
        """ops.norm_quant of ``x`` (VMEM, n) with row scale SR ``xs``: int8 to ``out``,
        scale to SR ``r_out``. ``ranged``: the pass that wrote ``x`` left its
        ``NORM(16)`` in IR_S, so the range pass is skipped."""
        im = self.im
        consts = im.norms[norm_name]
        mm = self.mm
        t1, t2 = self.V("t1"), self.V("t2")
        if not ranged:
            self.vop(f"{name}: range", VFn.PASS, n, x, red=Red.NORM, red_ir=IR_S, rbits=16)
        self.vop(f"{name}: normalize to 16 bits, sum of squares", VFn.PASS, n, x, d=t1,
                 sh_ir=IR_S, bits=16, red=Red.SUMSQ, red_ir=IR_SS)
        self.vop(f"{name}: times gain, range", VFn.MUL, n, t1, (Space.TMEM, mm.gain[norm_name]),
                 t2, red=Red.NORM, red_ir=IR_S2, rbits=17)
        self.vop(f"{name}: normalize to 17 bits, max", VFn.PASS, n, t2, d=t2, sh_ir=IR_S2,
                 bits=17, red=Red.MAXABS, red_ir=IR_AMAX)
        q = self.quant_tail(name, t2, n, out, None, "norm")
        R = self.sr
        self.sop(f"{name}: quantizer scale", SFn.SHIFT, d=R("norm.qs"), a=q, b=IR_S2)
        self.sop(f"{name}: input scale", SFn.SHIFT, d=R("norm.xs"), a=xs, b=IR_S)
        self.sop(f"{name}: sum of squares to scalar", SFn.FROM_INT, d=R("norm.ss"), a=IR_SS)
        self.sop(f"{name}: mean", SFn.MUL, d=R("norm.a"), a=R("norm.ss"),
                 b=self.const(("1/n", n), consts.inv_n))
        self.sop(f"{name}: xs squared", SFn.MUL, d=R("norm.b"), a=R("norm.xs"), b=R("norm.xs"))
        self.sop(f"{name}: mean square", SFn.MUL, d=R("norm.c"), a=R("norm.a"), b=R("norm.b"))
        self.sop(f"{name}: + eps", SFn.ADD, d=R("norm.var"), a=R("norm.c"),
                 b=self.const("eps", im.eps))
        self.sop(f"{name}: qs * xs", SFn.MUL, d=R("norm.d"), a=R("norm.qs"), b=R("norm.xs"))
        self.sop(f"{name}: rsqrt", SFn.RSQRT, d=R("norm.e"), a=R("norm.var"))
        self.sop(f"{name}: scale", SFn.MUL, d=R("norm.r0"), a=R("norm.d"), b=R("norm.e"))
        self.sop(f"{name}: gain exponent", SFn.SHIFT, d=r_out, a=R("norm.r0"), imm=consts.gain_exp)

    def quant_head(self, name, src, xs, out, out_dyn, scale_out, ranged=False):
        """ops.quant_heads for one head at ``src`` (VMEM, head_dim) with BitLinear scale
        SR ``xs``: int8 to ``out`` (+dyn), scale to SR ``scale_out``. ``ranged``: IR_S
        already holds the head's ``NORM(17)`` (from the RoPE pass that wrote it)."""
        hd = self.mm.hd
        t1 = self.V("t1")
        if not ranged:
            self.vop(f"{name}: range", VFn.PASS, hd, src, red=Red.NORM, red_ir=IR_S, rbits=17)
        self.vop(f"{name}: normalize to 17 bits, max", VFn.PASS, hd, src, d=t1, sh_ir=IR_S,
                 bits=17, red=Red.MAXABS, red_ir=IR_AMAX)
        q = self.quant_tail(name, t1, hd, out, out_dyn, "head")
        hs = self.sr("head.hs")
        self.sop(f"{name}: range shift of the scale", SFn.SHIFT, d=hs, a=q, b=IR_S)
        self.sop(f"{name}: times the row scale", SFn.MUL, d=scale_out, a=hs, b=xs)

    def rescale_residual(self, name, src, r, i, n):
        """x = residual_add(x, to_fixed(acc, r * linear_scale)) of layer ``i``'s ``n``."""
        scale = self.sr("res.c")
        self.sop(f"{name}: scale", SFn.MUL, d=scale, a=r, b=self.lin_scale(i, n))
        self.vop(f"{name}: rescale to Q15.16", VFn.MULS, self.mm.d, src, (Space.SR, scale),
                 self.V("t1"),
                 sh_imm=-ops.RES_FRAC_BITS, bits=ops.RES_BITS)
        self.vop(f"{name}: residual add, range", VFn.ADD, self.mm.d, self.V("x"), self.V("t1"),
                 self.V("x"), bits=ops.RES_BITS, red=Red.NORM, red_ir=IR_S, rbits=16)

    def matvec(self, name, first, dst):
        """The MATVEC of the stack whose first member is ``first``; streamed from the
        SDRAM, one per row chunk, each after its rows' transfer into a weight-store half."""
        sd = self.mm.sd
        if sd is None:
            base, m, k = self.mm.stack_of(first)
            self.emit(Op.MATVEC, name, base=base, m=m, k=k, d_space=dst[0], d_addr=dst[1])
            return
        wpw = self.mm.engine.layout.word_bytes // SDRAM_WORD_BYTES
        chunks = sd.chunks[first]
        for c in chunks:
            part = f"{name} rows {c.row0}..{c.row0 + c.m - 1}" if len(chunks) > 1 else name
            self.xfer(f"{part}: fetch", XFn.IN, (Space.WGT, c.wgt), c.sd, c.words * wpw)
            self.wait(f"{part}: wait for the weights")
            self.emit(Op.MATVEC, part, base=c.wgt, m=c.m, k=c.k, d_space=dst[0],
                      d_addr=dst[1] + c.row0)

    def xfer(self, name, fn, c, s_addr, n, *, npos_k=None, c_dyn=None, s_dyn=None,
             dyn_src=DynSrc.POS):
        """An XFER IN/OUT of ``n`` SDRAM words (plus ``pos << npos_k``) between ``c``
        (space, word) and SDRAM word ``s_addr``; ``c_dyn`` / ``s_dyn``: the shift of the
        dynamic offset ``(pos or token) << k`` of that side."""
        self.emit(Op.XFER, name, fn=fn, n=n, c_space=c[0], c_addr=c[1], s_addr=s_addr,
                  npos=npos_k is not None, npos_k=npos_k or 0, dyn_src=dyn_src,
                  c_dyn=c_dyn is not None, c_dyn_k=c_dyn or 0,
                  s_dyn=s_dyn is not None, s_dyn_k=s_dyn or 0)

    def wait(self, name):
        self.emit(Op.XFER, name, fn=XFn.WAIT)


def _compile(im, limits, engine, sampling, smul2, fuse_attention, sdram):
    """The step program, phase by phase (each phase's instructions in the golden order);
    a streamed model's program longer than PROG streams from the SDRAM in segments
    (:mod:`.overlay`: compiled twice, the second time with its room in the SDRAM image,
    which moves the KV cache's addresses but no instruction)."""
    mm, e = _emit(im, limits, engine, sampling, smul2, fuse_attention, sdram, 0)
    if len(e.ins) > limits.prog_words and mm.sd is not None:
        room = overlay.sdram_words(len(e.ins), limits.prog_words)
        mm, e2 = _emit(im, limits, engine, sampling, smul2, fuse_attention, sdram, room)
        assert len(e2.ins) == len(e.ins)
        e2.ins = overlay.segment(e2.ins, limits.prog_words, mm.sd.prog)
        return mm, e2
    if len(e.ins) > limits.prog_words:
        raise TernaryError(f"the program has {len(e.ins)} instructions; the device's prog_words "
                           f"limit is {limits.prog_words}")
    return mm, e


def _emit(im, limits, engine, sampling, smul2, fuse_attention, sdram, prog_sd_words):
    mm = MemoryMap(im.config, im.max_len, limits, engine, sdram, prog_sd_words)
    e = _Emitter(mm, im)
    regs = _embed(e)
    for i in range(mm.L):
        q_scales = _attention_inputs(e, regs, i)
        head_scales = _attend(e, i, q_scales, smul2=smul2, fuse_attention=fuse_attention)
        _attention_output(e, regs, i, head_scales)
        _mlp(e, regs, i)
    _head_and_sampler(e, regs, sampling)
    if mm.sd is not None:
        e.ins = hoist_transfers(e.ins, limits, engine.layout)
    if len(e.sr_names) + 1 > limits.sr_regs:
        raise TernaryError(f"the program needs {len(e.sr_names) + 1} scalar registers; the "
                           f"device's sr_regs limit is {limits.sr_regs}")
    return mm, e


@dataclass(frozen=True)
class _StepRegs:
    """Scalar registers every phase of a step shares."""
    res_scale: int      # SRINIT constant 2**-RES_FRAC_BITS: the residual stream's scale
    r: int              # the scale of the last norm's int8 output (its BitLinear's input)


def _embed(e):
    """Token check, then the token's embedding row to the residual stream ``x`` (Q15.16),
    leaving its ``NORM(16)`` range in IR_S for the first norm."""
    mm = e.mm
    res_scale = e.const("res_scale", scalar_from_int(1, -ops.RES_FRAC_BITS))
    e.emit(Op.SAMPLE, "token check", fn=SampleFn.TCHECK, n=mm.V)
    es = e.sr("embed.scale")
    row_dyn = (Dyn.A, DynSrc.TOKEN, log2_exact(mm.emb_stride))
    scale_dyn = (Dyn.A, DynSrc.TOKEN, 0)
    if mm.sd is not None:       # the step's RoPE row, the final norm's gains; the token's
        sd = mm.sd              # scale and row into EMBS[0], EMB row 0
        per = TMEM_PER_WORD
        e.xfer("rope: fetch the step's row", XFn.IN, (Space.TMEM, 0), sd.rope,
               mm.rope_stride // per, s_dyn=log2_exact(mm.rope_stride // per))
        e.xfer("final norm: fetch the gains", XFn.IN, (Space.TMEM, mm.gain[names.FINAL_NORM]),
               sd.gains + mm.L * sd.layer_gains // per, sd.final_gains // per)
        e.xfer("embed: fetch the row scale", XFn.IN, (Space.EMBS, 0), mm.sd.emb_scales, 1,
               s_dyn=0, dyn_src=DynSrc.TOKEN)
        e.xfer("embed: fetch the row", XFn.IN, (Space.EMB, 0), mm.sd.emb, mm.sd.row_words,
               s_dyn=log2_exact(mm.sd.row_words), dyn_src=DynSrc.TOKEN)
        e.wait("embed: wait for the row")
        row_dyn = scale_dyn = None
    e.sop("embed: row scale", SFn.LOAD, d=es, s=(Space.EMBS, 0), dyn=scale_dyn)
    e.vop("embed: row to Q15.16, range", VFn.MULS, mm.d, (Space.EMB, 0), (Space.SR, es), e.V("x"),
          sh_imm=-ops.RES_FRAC_BITS, bits=ops.RES_BITS, red=Red.NORM, red_ir=IR_S, rbits=16,
          dyn=row_dyn)
    return _StepRegs(res_scale=res_scale, r=e.sr("r"))


def _attention_inputs(e, regs, i):
    """Layer ``i``'s input norm, the q/k/v matvec and scales, RoPE and the int8
    quantizers: q to ``q8``, k and v into the KV cache at the step's position. Returns
    the query heads' scale registers."""
    mm, im, sv = e.mm, e.im, e.V
    d, nh, nkv, hd = mm.d, mm.nh, mm.nkv, mm.hd
    act, r = (Space.ACT, 0), regs.r
    p = names.layer(i)
    ln = f"layer {i}"
    if mm.sd is not None:       # the layer's gains, into the TMEM half of its parity
        lg = mm.sd.layer_gains // TMEM_PER_WORD
        e.xfer(f"{ln} norms: fetch the gains", XFn.IN, (Space.TMEM, mm.gain[p + names.INPUT_NORM]),
               mm.sd.gains + i * lg, lg)
        e.xfer(f"{ln}: fetch the weight scales", XFn.IN,
               (Space.VMEM, mm.lin_scales_at(i)),
               mm.sd.lin_scales + i * LIN_SCALE_WORDS, LIN_SCALE_WORDS)
        e.wait(f"{ln} norms: wait for the gains and scales")
    e.norm(f"{ln} input norm", p + names.INPUT_NORM, sv("x"), d, regs.res_scale, act, r,
           ranged=True)
    e.matvec(f"{ln} q/k/v matvec", p + QKV[0], sv("qkv"))
    lin = [e.sr(n) for n in ("qs", "ks", "vs")]
    for reg, n in zip(lin, QKV):
        e.sop(f"{ln} {n.split('.')[-1]} scale", SFn.MUL, d=reg, a=r,
              b=e.lin_scale(i, n))
    rope = (Space.TMEM, 0)      # the step's row (streamed: the one row on chip)
    rope_dyn = (Dyn.B, DynSrc.POS, log2_exact(mm.rope_stride)) if mm.sd is None else None
    qsc = [e.sr(("q_sc", h)) for h in range(nh)]
    for h in range(nh):     # each RoPE pass leaves its head's range for the quantizer
        e.vop(f"{ln} rope q head {h}, range", VFn.ROT, hd, sv("qkv", h * hd), rope,
              sv("rot", h * hd), sh_imm=ops.ROPE_FRAC_BITS, dyn=rope_dyn, red=Red.NORM,
              red_ir=IR_S, rbits=17)
        e.quant_head(f"{ln} quantize q head {h}", sv("rot", h * hd), lin[0],
                     sv("q8", h * hd), None, qsc[h], ranged=True)
    kv_dyn = (Dyn.D, DynSrc.POS, log2_exact(mm.kv_stride))
    for g in range(nkv):
        # on chip: into the cache at the step's position; streamed from the SDRAM: into
        # the KV head's staging row, from which it goes to the SDRAM
        row, kvs, dyn = ((mm.kv_row(i, g), lambda v: mm.kvs(i, g, v), kv_dyn) if mm.sd is None
                         else (mm.kv_stage(g), lambda v: mm.kvs_stage(g, v), None))
        e.vop(f"{ln} rope k head {g}, range", VFn.ROT, hd, sv("qkv", d + g * hd), rope,
              sv("rot", d + g * hd), sh_imm=ops.ROPE_FRAC_BITS, dyn=rope_dyn, red=Red.NORM,
              red_ir=IR_S, rbits=17)
        for kind, src, space, v in (("k", sv("rot", d + g * hd), Space.KVK, 0),
                                    ("v", sv("qkv", d + mm.kvd + g * hd), Space.KVV, 1)):
            sc = e.sr("kv_sc")
            e.quant_head(f"{ln} quantize {kind} head {g} into the cache", src, lin[1 + v],
                         (space, row), dyn, sc, ranged=not v)
            e.sop(f"{ln} store {kind} head {g} scale", SFn.STORE, a=sc, s=(Space.KVS, kvs(v)),
                  dyn=None if dyn is None else (Dyn.A, DynSrc.POS, 0))
    _kv_transfers(e, i, XFn.OUT)
    return qsc


_KV_KINDS = {"k": "K rows", "v": "V rows", "ks": "K scales", "vs": "V scales"}


def _kv_transfers(e, i, fn, heads=None):
    """Streamed from the SDRAM, the KV cache of layer ``i``: OUT writes the step's rows
    and scales from the staging rows to their position, IN brings the rows and scales of
    positions 0..pos of the KV ``heads`` (default all) into their slot (one transfer at a
    time: the step's own come back with the rest)."""
    mm = e.mm
    sd = mm.sd
    if sd is None:
        return
    rw = sd.kv_row_words
    for g in range(mm.nkv) if heads is None else heads:
        row = mm.kv_row(i, g) if fn == XFn.IN else mm.kv_stage(g)
        scale = (lambda v: mm.kvs(i, g, v)) if fn == XFn.IN else (lambda v: mm.kvs_stage(g, v))
        # (the V rows last: the scales and the K rows are in when it starts, so the scores
        # run while they come: the attention WAITs before its weights . values)
        for kind, c, per in (("ks", (Space.KVS, scale(0)), 1), ("vs", (Space.KVS, scale(1)), 1),
                             ("k", (Space.KVK, row), rw), ("v", (Space.KVV, row), rw)):
            what, k = _KV_KINDS[kind], log2_exact(per)
            if fn == XFn.IN:
                e.xfer(f"layer {i} kv head {g}: fetch the {what}", fn, c, sd.kv_sd(kind, i, g),
                       per, npos_k=k)
            else:
                e.xfer(f"layer {i} kv head {g}: write the step's {what[:-1]}", fn, c,
                       sd.kv_sd(kind, i, g), per, s_dyn=k)


def _attend(e, i, qsc, *, smul2, fuse_attention):
    """Each query head of layer ``i`` over the cached keys (the heads of a KV group one
    after another): scores, softmax in log2 units, weights times values into ``acc``.
    Returns the heads' output scale registers."""
    mm, im, sv = e.mm, e.im, e.V
    nh, nkv, hd = mm.nh, mm.nkv, mm.hd
    group = nh // nkv
    ln = f"layer {i}"
    asc = [e.sr(("a_sc", h)) for h in range(nh)]
    score_k = e.const("score_k", im.score_k)
    kst = log2_exact(mm.kv_stride)
    for h in range(nh):
        g = h // group
        an = f"{ln} attn head {h}"

        def wait_v():           # streamed: the KV head's V rows are in before they are read
            if mm.sd is not None and h % group == 0:
                e.wait(f"{ln} kv head {g}: wait for its V rows")

        if h % group == 0:      # once per KV head: its query heads follow in order
            if mm.sd is not None:
                _kv_transfers(e, i, XFn.IN, (g,))
            e.emit(Op.SVOP, f"{an}: largest value-scale exponent", fn=SVFn.MAXE, n=0,
                   npos=1, a_space=Space.KVS, a_addr=mm.kvs(i, g, 1), red=Red.MAXE,
                   red_ir=IR_EMAX)
        key_scales = mm.vmem["s0" if fuse_attention else "s1"]     # the per-key scalars
        if smul2:
            e.emit(Op.SVOP, f"{an}: q scale x k scales x score_k", fn=SVFn.SMUL2, n=0,
                   npos=1, a_space=Space.KVS, a_addr=mm.kvs(i, g, 0), b_space=Space.SR,
                   b_addr=qsc[h], b2=score_k, d_space=Space.VMEM, d_addr=key_scales)
        else:
            e.emit(Op.SVOP, f"{an}: q scale x k scales", fn=SVFn.SMUL, n=0, npos=1,
                   a_space=Space.KVS, a_addr=mm.kvs(i, g, 0), b_space=Space.SR,
                   b_addr=qsc[h], d_space=Space.VMEM, d_addr=key_scales)
            e.emit(Op.SVOP, f"{an}: x score_k", fn=SVFn.SMUL, n=0, npos=1,
                   a_space=Space.VMEM, a_addr=key_scales, b_space=Space.SR, b_addr=score_k,
                   d_space=Space.VMEM, d_addr=key_scales)
        if fuse_attention:
            e.emit(Op.ATTN, f"{an}: scores to log2 units, max", fn=AttnFn.SCORES, n=0,
                   npos=1, a_space=Space.VMEM, a_addr=mm.vmem["q8"] + h * hd,
                   b_space=Space.KVK, b_addr=mm.kv_row(i, g), d_space=Space.VMEM,
                   d_addr=key_scales, len=hd, stride=kst, sh_imm=-ops.SCORE_FRAC_BITS,
                   red_ir=IR_ZMAX)
            wait_v()
            e.emit(Op.ATTN, f"{an}: exp2, sum, weights . values", fn=AttnFn.PV, n=0,
                   npos=1, a_space=Space.VMEM, a_addr=key_scales, b_space=Space.KVV,
                   b_addr=mm.kv_row(i, g), d_space=Space.VMEM,
                   d_addr=mm.vmem["acc"] + h * hd, len=hd, stride=kst, sh_imm=16,
                   sh_ir=IR_EMAX, ir_b=IR_ZMAX, red_ir=IR_TOT)
        else:
            e.emit(Op.DOT, f"{an}: scores", n=0, npos=1, a_space=Space.VMEM,
                   a_addr=mm.vmem["q8"] + h * hd, b_space=Space.KVK,
                   b_addr=mm.kv_row(i, g), d_space=Space.VMEM, d_addr=mm.vmem["s0"],
                   len=hd, stride=kst)
            e.vop(f"{an}: scores to log2 units, max", VFn.MULS, 0, sv("s0"), sv("s1"),
                  sv("s2"), npos=1, sh_imm=-ops.SCORE_FRAC_BITS, bits=ops.SCORE_BITS,
                  red=Red.MAX, red_ir=IR_ZMAX)
            e.vop(f"{an}: exp2, sum", VFn.EXP2, 0, sv("s2"), (Space.IR, IR_ZMAX), sv("s3"),
                  npos=1, red=Red.SUM, red_ir=IR_TOT)
            e.vop(f"{an}: weights x value scales", VFn.MULS, 0, sv("s3"),
                  (Space.KVS, mm.kvs(i, g, 1)), sv("s4"), npos=1, sh_imm=16,
                  sh_ir=IR_EMAX)
            wait_v()
            e.emit(Op.AXPY, f"{an}: weights . values", n=0, npos=1, a_space=Space.VMEM,
                   a_addr=mm.vmem["s4"], b_space=Space.KVV, b_addr=mm.kv_row(i, g),
                   d_space=Space.VMEM, d_addr=mm.vmem["acc"] + h * hd, len=hd,
                   stride=kst)
        tot = e.sr("attn.tot")
        e.sop(f"{an}: sum to scalar", SFn.FROM_INT, d=tot, a=IR_TOT)
        e.sop(f"{an}: 1/sum", SFn.RECIP, d=tot, a=tot)
        e.sop(f"{an}: output scale", SFn.SHIFT, d=asc[h], a=tot, b=IR_EMAX, imm=16)
    return asc


def _attention_output(e, regs, i, asc):
    """Layer ``i``'s heads merged to one exponent, the sub-norm, o_proj and the residual
    add."""
    mm, sv = e.mm, e.V
    d, nh, hd = mm.d, mm.nh, mm.hd
    act, r = (Space.ACT, 0), regs.r
    p = names.layer(i)
    ln = f"layer {i}"
    mn = f"{ln} merge heads"
    e.sop(f"{mn}: top = none", SFn.IADD, d=IR_TOP, imm=-(1 << 20))
    hs = [e.sr(("hs", h)) for h in range(nh)]
    for h in range(nh):
        e.vop(f"{mn}: head {h} range", VFn.PASS, hd, sv("acc", h * hd), red=Red.NORM,
              red_ir=IR_S, rbits=16)
        e.vop(f"{mn}: head {h} normalize to 16 bits, max", VFn.PASS, hd, sv("acc", h * hd),
              d=sv("m16", h * hd), sh_ir=IR_S, bits=16, red=Red.MAXABS, red_ir=IR_AMAX)
        e.sop(f"{mn}: head {h} scale", SFn.SHIFT, d=hs[h], a=asc[h], b=IR_S)
        e.sop(f"{mn}: head {h} top exponent", SFn.IMAXE, d=IR_TOP, a=hs[h], b=IR_AMAX, c=IR_TOP)
    for h in range(nh):
        e.vop(f"{mn}: head {h} align", VFn.MULS, hd, sv("m16", h * hd), (Space.SR, hs[h]),
              sv("att", h * hd), sh_ir=IR_TOP)
    one = e.sr("merge.one")
    e.sop(f"{mn}: scale", SFn.FROM_INT, d=one, b=IR_TOP, imm=1)
    e.norm(f"{ln} attn sub-norm", p + names.ATTN_SUB_NORM, sv("att"), d, one, act, r)
    e.matvec(f"{ln} o_proj matvec", p + names.O_PROJ, sv("o"))
    e.rescale_residual(f"{ln} o_proj", sv("o"), r, i, names.O_PROJ)


def _mlp(e, regs, i):
    """Layer ``i``'s MLP block: post-attention norm, the gate/up matvec and scales, the
    gated activation of ``hidden_act`` (:data:`_GLUS`), the sub-norm, down_proj and the
    residual add."""
    mm, im, sv = e.mm, e.im, e.V
    d, f = mm.d, mm.f
    act, r = (Space.ACT, 0), regs.r
    p = names.layer(i)
    ln = f"layer {i}"
    e.norm(f"{ln} post-attention norm", p + names.POST_ATTN_NORM, sv("x"), d,
           regs.res_scale, act, r, ranged=True)
    e.matvec(f"{ln} gate/up matvec", p + GATE_UP[0], sv("gu"))
    gs, us = e.sr("gs"), e.sr("us")
    for reg, n in ((gs, GATE_UP[0]), (us, GATE_UP[1])):
        e.sop(f"{ln} {n.split('.')[-1]} scale", SFn.MUL, d=reg, a=r,
              b=e.lin_scale(i, n))
    gsc = _GLUS[im.config.hidden_act](e, f"{ln} glu", gs, us)
    e.norm(f"{ln} ffn sub-norm", p + names.FFN_SUB_NORM, sv("gu"), f, gsc, act, r,
           ranged=True)
    e.matvec(f"{ln} down_proj matvec", p + names.DOWN_PROJ, sv("o"))
    e.rescale_residual(f"{ln} down_proj", sv("o"), r, i, names.DOWN_PROJ)


def _glu_product(e, gn, a):
    """The tail both GLUs share: ``u`` (the second half of ``gu``) normalized to signed 16
    bits (its shift in IR_G2), times the activation normalized to 17 bits at ``a``, into
    ``gu`` with its ``NORM(16)`` in IR_S for the sub-norm."""
    f, sv = e.mm.f, e.V
    t3 = sv("t3")
    e.vop(f"{gn}: u range", VFn.PASS, f, sv("gu", f), red=Red.NORM, red_ir=IR_G2, rbits=16)
    e.vop(f"{gn}: u normalize", VFn.PASS, f, sv("gu", f), d=t3, sh_ir=IR_G2, bits=16)
    e.vop(f"{gn}: product, range", VFn.MUL, f, a, t3, sv("gu"), red=Red.NORM, red_ir=IR_S,
          rbits=16)


def _relu2_glu(e, gn, gs, us):
    """ops.relu2_glu of ``gu`` with row scales SR ``gs``, ``us``: the product into ``gu``;
    returns the SR of its scale."""
    f, sv = e.mm.f, e.V
    t1, t2 = sv("t1"), sv("t2")
    e.vop(f"{gn}: relu(g) range", VFn.PASSR, f, sv("gu"), red=Red.NORM, red_ir=IR_G0, rbits=17)
    e.vop(f"{gn}: relu(g) normalize", VFn.PASSR, f, sv("gu"), d=t1, sh_ir=IR_G0, bits=17)
    e.vop(f"{gn}: square, range", VFn.MUL, f, t1, t1, t2, red=Red.NORM, red_ir=IR_G1, rbits=17)
    e.vop(f"{gn}: square normalize", VFn.PASS, f, t2, d=t2, sh_ir=IR_G1, bits=17)
    _glu_product(e, gn, t2)
    ga, gb, gsc = e.sr("glu.a"), e.sr("glu.b"), e.sr("glu.sc")
    e.sop(f"{gn}: gs * gs", SFn.MUL, d=ga, a=gs, b=gs)
    e.sop(f"{gn}: * us", SFn.MUL, d=gb, a=ga, b=us)
    e.sop(f"{gn}: 2 s0", SFn.IADD, d=IR_GT, a=IR_G0, b=IR_G0)
    e.sop(f"{gn}: + s1", SFn.IADD, d=IR_GT, a=IR_GT, b=IR_G1)
    e.sop(f"{gn}: + s2", SFn.IADD, d=IR_GT, a=IR_GT, b=IR_G2)
    e.sop(f"{gn}: scale", SFn.SHIFT, d=gsc, a=gb, b=IR_GT)
    return gsc


def _silu_glu(e, gn, gs, us):
    """ops.silu_glu of ``gu`` with row scales SR ``gs``, ``us``: ``g`` normalized to 17
    bits, its real value as Q4.12 (``z``, a MULS by g's scale), ``g * sigmoid(z)`` (VOP
    SIGMUL) normalized to 17 bits, then the product; returns the SR of its scale."""
    f, sv = e.mm.f, e.V
    t1, t2, t3 = sv("t1"), sv("t2"), sv("t3")
    gsh, gb, gsc = e.sr("glu.gs"), e.sr("glu.b"), e.sr("glu.sc")
    e.vop(f"{gn}: g range", VFn.PASS, f, sv("gu"), red=Red.NORM, red_ir=IR_G0, rbits=17)
    e.vop(f"{gn}: g normalize", VFn.PASS, f, sv("gu"), d=t1, sh_ir=IR_G0, bits=17)
    e.sop(f"{gn}: g scale", SFn.SHIFT, d=gsh, a=gs, b=IR_G0)
    e.vop(f"{gn}: g to Q4.12", VFn.MULS, f, t1, (Space.SR, gsh), t2,
          sh_imm=-SIGMOID_FRAC_BITS, bits=SIGMOID_FRAC_BITS + 5)
    e.vop(f"{gn}: g * sigmoid, range", VFn.SIGMUL, f, t1, t2, t3, red=Red.NORM, red_ir=IR_G1,
          rbits=17)
    e.vop(f"{gn}: g * sigmoid normalize", VFn.PASS, f, t3, d=t2, sh_ir=IR_G1, bits=17)
    _glu_product(e, gn, t2)
    e.sop(f"{gn}: g scale * us", SFn.MUL, d=gb, a=gsh, b=us)
    e.sop(f"{gn}: s1 + s2", SFn.IADD, d=IR_GT, a=IR_G1, b=IR_G2)
    e.sop(f"{gn}: scale", SFn.SHIFT, d=gsc, a=gb, b=IR_GT, imm=-SIGMOID_ONE_BITS)
    return gsc


# The GLU emitter of each ``hidden_act`` the vector machine runs (limits.VM_ACTIVATIONS).
_GLUS = {"relu2": _relu2_glu, "silu": _silu_glu}
assert set(_GLUS) == set(VM_ACTIVATIONS), (_GLUS, VM_ACTIVATIONS)


def _head_and_sampler(e, regs, sampling):
    """Final norm, lm_head and the sampler: only in steps that sample (``gen_only``)."""
    mm, sv = e.mm, e.V
    d, V, r = mm.d, mm.V, regs.r
    e.gen = 1
    e.norm("final norm", names.FINAL_NORM, sv("x"), d, regs.res_scale, sv("q8"), r, ranged=True)
    # (streamed, the lm_head's chunks take EMB's halves: the step's embedding row is used)
    rows, scales = ((Space.EMB, Space.EMBS) if mm.config.tie_word_embeddings or mm.sd
                    else (Space.HEAD, Space.HEADS))
    dot = dict(a_space=Space.VMEM, a_addr=mm.vmem["q8"], b_space=rows, d_space=Space.VMEM,
               len=d, stride=log2_exact(mm.emb_stride))
    sd = mm.sd
    smul = dict(fn=SVFn.SMUL, a_space=scales, b_space=Space.SR, b_addr=r, d_space=Space.VMEM,
                gen_only=1)
    to_q15 = dict(sh_imm=-ops.LOGIT_FRAC_BITS, bits=ops.LOGIT_BITS)
    if sd is None and not mm.limits.vmem_single:
        e.emit(Op.DOT, "lm_head: dots", n=V, b_addr=0, d_addr=mm.vmem["s0"], **dot)
        e.emit(Op.SVOP, "lm_head: row scales", n=V, a_addr=0, d_addr=mm.vmem["s1"], **smul)
        e.vop("lm_head: logits to Q15.16", VFn.MULS, V, sv("s0"), sv("s1"), sv("lg"), **to_q15)
    else:
        # in chunks: streamed, the rows and their scales in the two halves of the buffers
        # in turn; each chunk's dots and scales in s0 and s1, its logits into lg (on a
        # device with a single-copy VMEM bank, lg is there, and s0/s1 a chunk long)
        R = mm.limits.head_chunk_rows
        for j, r0 in enumerate(range(0, V, R)):
            n = min(R, V - r0)
            part = f"lm_head rows {r0}..{r0 + n - 1}"
            at, row_at = r0, r0 * mm.emb_stride
            if sd is not None:
                half = (j % 2) * R
                at, row_at = half, half * mm.emb_stride
                e.xfer(f"{part}: fetch the scales", XFn.IN, (scales, half), sd.head_scales + r0, n)
                e.xfer(f"{part}: fetch", XFn.IN, (rows, row_at),
                       sd.head + r0 * sd.row_words, n * sd.row_words)
                e.wait(f"{part}: wait for the rows")
            e.emit(Op.DOT, f"{part}: dots", n=n, b_addr=row_at, d_addr=mm.vmem["s0"], **dot)
            e.emit(Op.SVOP, f"{part}: row scales", n=n, a_addr=at, d_addr=mm.vmem["s1"], **smul)
            e.vop(f"{part}: logits to Q15.16", VFn.MULS, n, sv("s0"), sv("s1"), sv("lg", r0),
                  **to_q15)
    e.vop("sample: argmax", VFn.PASS, V, sv("lg"), red=Red.ARGMAX, red_ir=IR_ID, cond=Cond.GREEDY)
    if sampling:    # the weights in wt, computed in place
        S = Cond.SAMPLED
        e.vop("sample: max logit", VFn.PASS, V, sv("lg"), red=Red.MAX, red_ir=IR_LMAX, cond=S)
        e.vop("sample: max - logit", VFn.RSUB, V, sv("lg"), (Space.IR, IR_LMAX), sv("wt"), cond=S)
        e.vop("sample: x log2(e)/T", VFn.MULS, V, sv("wt"), (Space.SR, SR_INV_T), sv("wt"),
              sh_imm=ops.LOGIT_FRAC_BITS - ops.SCORE_FRAC_BITS, cond=S)
        e.vop("sample: exp2 weights", VFn.EXP2X, V, sv("wt"), (Space.IR, 0), sv("wt"), cond=S)
        e.emit(Op.SAMPLE, "sample: top-k mask", fn=SampleFn.TOPK, n=V, a_space=Space.VMEM,
               a_addr=mm.vmem["lg"], d_space=Space.VMEM, d_addr=mm.vmem["wt"], cond=S, gen_only=1)
        e.vop("sample: sum of weights", VFn.PASS, V, sv("wt"), red=Red.SUM, red_ir=IR_LSUM, cond=S)
        e.emit(Op.SAMPLE, "sample: draw", fn=SampleFn.DRAW, n=V, a_space=Space.VMEM,
               a_addr=mm.vmem["wt"], ir_a=IR_LSUM, ir_d=IR_ID, cond=S, gen_only=1)
    e.emit(Op.SAMPLE, "sample: emit the id", fn=SampleFn.EMIT, n=V, ir_a=IR_ID, gen_only=1)
    e.emit(Op.END, "end of step", gen_only=0)


@dataclass
class Program:
    """A compiled step program: instructions (each with a name), its memory map and the
    SRINIT constants."""
    instrs: list
    mm: MemoryMap
    sr_init: dict = field(default_factory=dict)

    @property
    def names(self):
        return [i.name for i in self.instrs]

    def words(self):
        return prog_words(self.instrs)

    @property
    def segmented(self):
        """Whether the program streams from the SDRAM in segments (:mod:`.overlay`): the
        SDRAM image holds all of it, PROG's image its segment 0."""
        return len(self.instrs) > self.mm.limits.prog_words

    def prog_image(self, words=None):
        """PROG's upload image (of ``words``, default :meth:`words`): the whole program,
        or a segmented one's segment 0 (half 0, which every step leaves as it found it, so
        the image stays resident; segment 0 fetches the rest)."""
        words = self.words() if words is None else words
        P = self.mm.limits.prog_words
        return words[:P] if self.segmented else words[:2 * P]

    def listing(self):
        """One line per instruction: ``pc  CLASS fn  name  field=value ...`` (non-zero
        fields), for reading a program or a --check report."""
        lines = []
        for pc, ins in enumerate(self.instrs):
            enum = FN_ENUMS.get(ins.op)
            fn = enum(ins.fn).name if enum and ins.fn in enum._value2member_map_ else ins.fn
            fields = " ".join(f"{k}={v}" for k, v in ins.f.items() if v and k != "fn")
            lines.append(f"{pc:5d}  {ins.op.name:6s} {fn!s:9s} {ins.name}  [{fields}]")
        return "\n".join(lines)

    @property
    def logits(self):
        """VMEM (address, length) of the logits after a sampling step."""
        return self.mm.vmem["lg"], self.mm.V


def compile_program(im, limits=None, sampling=True, engine=None, smul2=False,
                    fuse_attention=False, sdram=None):
    """The step program of ``im`` for a device with ``limits`` (default: the smallest
    that hold the model at ``im.max_len``). ``sampling`` adds the temperature/top-k tail
    (selected at run time by ``cond``); without it the program is greedy only.
    ``smul2``: the attention's ``(qs*ks)*score_k`` as one SVOP SMUL2 pass instead of two
    SMUL passes. ``fuse_attention``: each query head's attention as ATTN SCORES and ATTN
    PV passes (3 passes over the keys fewer). Both are optional instructions of a VM
    (:class:`~.isa.Feature`): the host compiles with them exactly when the device's limits
    say it runs them (:meth:`DeviceLimits.compile_options
    <ternary_core.offload.limits.DeviceLimits.compile_options>`); the Python machine and
    the RTL VM run both. ``sdram``: where the model lives (:class:`MemoryMap`: None puts
    it on chip if it fits there, else in the device's SDRAM)."""
    engine = engine or DEFAULT_ENGINE
    limits = limits or DeviceLimits.for_config(im.config, im.max_len).with_engine(engine)
    mm, e = _compile(im, limits, engine, sampling, smul2, fuse_attention, sdram)
    return Program(e.ins, mm, e.sr_init)
