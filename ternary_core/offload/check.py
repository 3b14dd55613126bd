"""Naming the op where a device went wrong (``--check``) and the write set of an
instruction (for instruction-by-instruction RTL tests).

:func:`instr_writes` says what one instruction writes in the step at ``pos`` (memory
ranges and registers), so a test compares only those after running one instruction on
the RTL and on :func:`~.machine.execute`. :func:`locate_difference` compares the state a
device left after a step with the reference Machine's and names the earliest instruction
(by program order) whose surviving output differs: KV rows and scales are written once
per layer and never overwritten, so a wrong op shows up at its layer.
"""

from .isa import (SDRAM_WORD_BYTES, AttnFn, Dyn, Op, Red, SampleFn, SFn, Space, XFn, xfer_bytes,
                  xfer_space)
from .semantics import dyn_offset, element_count, runs, xfer_addresses


def instr_writes(ins, pos, token=0):
    """``[(Space or "IR"/"SR", start, count)]`` written by ``ins`` in the step at ``pos``
    (before ``cond`` / ``gen_only``, which may skip it; PARAM-dependent sizes such as
    TOPK's are the whole range)."""
    out = []
    f = ins.f
    n = element_count(ins, pos)
    if ins.op in (Op.VOP, Op.SVOP, Op.DOT, Op.AXPY, Op.SAMPLE, Op.MATVEC, Op.ATTN):
        if f.get("d_space", 0) != Space.NONE:
            count = {Op.AXPY: f.get("len", 0), Op.MATVEC: f.get("m", 0)}.get(ins.op, n)
            if ins.op == Op.ATTN and ins.fn == AttnFn.PV:
                count = ins.len
            out.append((Space(ins.d_space), ins.d_addr + dyn_offset(ins, Dyn.D, pos, token), count))
    if ins.op in (Op.VOP, Op.SVOP) and ins.red != Red.NONE and ins.red_ir:
        out.append(("IR", ins.red_ir, 1))
    if ins.op == Op.ATTN and ins.red_ir:
        out.append(("IR", ins.red_ir, 1))
    if ins.op == Op.SAMPLE:
        if ins.fn == SampleFn.DRAW and ins.ir_d:
            out.append(("IR", ins.ir_d, 1))
        if ins.fn == SampleFn.EMIT:
            out.append((Space.TOKENS, pos + 1, 1))
    if ins.op == Op.XFER and ins.fn in (XFn.IN, XFn.OUT):
        c_addr, s_addr = xfer_addresses(ins, pos, token)
        if ins.fn == XFn.OUT:
            out.append((Space.SDRAM, s_addr, n))
        elif xfer_space(ins.c_space) not in (Space.WGT, Space.PROG):   # (not read back)
            space = Space(ins.c_space)
            out.append((space, c_addr, n * SDRAM_WORD_BYTES // xfer_bytes(space, None)))
    if ins.op == Op.SOP:
        if ins.fn in (SFn.FROM_INT, SFn.MUL, SFn.ADD, SFn.SHIFT, SFn.RECIP, SFn.RSQRT, SFn.LOAD):
            out.append(("SR", ins.d, 1))
        elif ins.fn in (SFn.IADD, SFn.IMAXE) and ins.d:
            out.append(("IR", ins.d, 1))
        elif ins.fn == SFn.STORE:
            out.append((Space(ins.s_space), ins.s_addr + dyn_offset(ins, Dyn.A, pos, token)
                        if ins.dyn_sel else ins.s_addr, 1))
    return out


def instr_register_reads(ins):
    """``[("IR" or "SR", index)]`` the instruction reads (IR[0] and SR[0] included)."""
    f, op = ins.f, ins.op
    out = []
    if op == Op.VOP:
        out.append(("IR", ins.sh_ir))
        if ins.b_space in (Space.IR, Space.SR):
            out.append((Space(ins.b_space).name, ins.b_addr))
    elif op == Op.SVOP:
        if ins.b_space == Space.SR:
            out.append(("SR", ins.b_addr))
        if ins.fn == 2:                                     # SMUL2
            out.append(("SR", ins.b2))
    elif op == Op.ATTN:
        if ins.fn == AttnFn.PV:
            out += [("IR", ins.sh_ir), ("IR", ins.ir_b)]
    elif op == Op.SAMPLE and ins.fn in (SampleFn.DRAW, SampleFn.EMIT):
        out.append(("IR", ins.ir_a))
    elif op == Op.SOP:
        a, b = f["a"], f["b"]
        out += {SFn.FROM_INT: [("IR", a), ("IR", b)], SFn.MUL: [("SR", a), ("SR", b)],
                SFn.ADD: [("SR", a), ("SR", b)], SFn.SHIFT: [("SR", a), ("IR", b)],
                SFn.RECIP: [("SR", a)], SFn.RSQRT: [("SR", a)], SFn.STORE: [("SR", a)],
                SFn.IADD: [("IR", a), ("IR", b)],
                SFn.IMAXE: [("SR", a), ("IR", b), ("IR", f["c"])]}.get(ins.fn, [])
    return out


def locate_difference(program, pos, expected, got, token=0, gen=True, sampled=False):
    """``(pc, name, space, address)`` of the earliest instruction whose output survives
    the step at ``pos`` and differs between ``expected`` and ``got`` (``{Space: array}``
    of the spaces a device can read back, e.g. VMEM, KVK, KVV, KVS, TOKENS), or None."""
    last = {}
    for pc, ins in enumerate(program.instrs):
        if not runs(ins, gen=gen, sampled=sampled):
            continue
        for space, start, count in instr_writes(ins, pos, token):
            if space in expected and space in got:
                for a in range(start, start + count):
                    last[(space, a)] = pc
    bad = [(pc, space, a) for (space, a), pc in last.items()
           if int(expected[space][a]) != int(got[space][a])]
    if not bad:
        return None
    pc, space, a = min(bad)
    return pc, program.instrs[pc].name, space, a

