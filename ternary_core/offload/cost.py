"""Op-level ideal cycles of a compiled step program: each executed instruction's work
divided by the VM's parallel units, summed with no overlap (the yardstick of issue 12:
"device cycles within 1.3x of the op-level ideal").

Units (docs/device-isa.md): VOP and SVOP 1 element per cycle; SOP 1 per cycle; DOT and
AXPY :data:`~.isa.DOT_LANES` int8 lanes (a row of ``len`` bytes takes
``ceil(len / 32)`` cycles), and so does each ATTN pass (one key a row); MATVEC the
engine's ``ceil(m/rows) * ceil(k/cols)`` tiles; SAMPLE TOPK two passes over the logits
(a selection and a mask), DRAW one; EMIT, TCHECK and END one cycle.

This is the program-level ideal of what the compiler emits. The plan-level ideal of
docs/model-offload.md (``rtl/decode/cycle_model.py``, per-op work with the plan's lane
counts, no program) stays as it is: it is the design target this one is compared with.
"""

from .isa import DOT_LANES, Cond, Op, SampleFn


def _ceil(a, b):
    return -(-a // b)


def instr_cost(ins, pos, engine, *, gen=True, sampled=False, top_k=0, vop_lanes=1,
               svop_lanes=1, dot_lanes=DOT_LANES):
    """Ideal cycles of one instruction in the step at ``pos`` (0 if it is skipped);
    ``*_lanes``: elements per cycle of the VM's units (the plan's 1, 1, 32 by default)."""
    if ins.op == Op.END:
        return 1
    if ins.op == Op.NOP or (ins.gen_only and not gen):
        return 0
    if (ins.cond == Cond.GREEDY and sampled) or (ins.cond == Cond.SAMPLED and not sampled):
        return 0
    n = ins.n + (pos + 1 if ins.f.get("npos") else 0) if "n" in ins.f else 0
    if ins.op == Op.VOP:
        return _ceil(n, vop_lanes)
    if ins.op == Op.SVOP:
        return _ceil(n, svop_lanes)
    if ins.op == Op.SOP:
        return 1
    if ins.op in (Op.DOT, Op.AXPY, Op.ATTN):
        return n * _ceil(ins.len, dot_lanes)
    if ins.op == Op.MATVEC:
        return _ceil(ins.m, engine.rows) * _ceil(ins.k, engine.cols)
    if ins.op == Op.SAMPLE:
        if ins.fn == SampleFn.TOPK:
            return 2 * n if 0 < top_k < n else 0
        if ins.fn == SampleFn.DRAW:
            return n
        return 1
    raise ValueError(f"no cost for {ins.op.name}")


def program_cost(program, pos, *, gen=True, sampled=False, top_k=0, engine=None, **lanes):
    """``{class name: cycles, "total": cycles}`` of the step at ``pos`` (``gen``: the step
    samples the next id; ``sampled``/``top_k``: the run's sampler; ``lanes``: the
    ``*_lanes`` of :func:`instr_cost`)."""
    engine = engine or program.mm.engine
    out = {}
    for ins in program.instrs:
        c = instr_cost(ins, pos, engine, gen=gen, sampled=sampled, top_k=top_k, **lanes)
        out[ins.op.name] = out.get(ins.op.name, 0) + c
    out["total"] = sum(out.values())
    return out
