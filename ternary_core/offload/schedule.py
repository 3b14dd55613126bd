"""When a program's SDRAM transfers start: each XFER IN as early as it safely can, so
that the SDRAM streams the next weights while the machine computes (issue 20).

The compiler emits every transfer just before its use (XFER, WAIT, the use);
:func:`hoist_transfers` then moves each XFER IN up past every instruction that cannot
touch its on-chip words, stopping at the XFER or WAIT before it (one transfer runs at a
time, in program order), at a SAMPLE (the token check guards the embedding row's
address) and at anything that may read or write the words it fills. What an instruction
may touch is taken from its fields for every position at once (:func:`static_access`):
a dynamic or position-dependent operand counts as its whole space, so the move is safe
at every position, not only at the ones a test runs. The Python machine checks the
same rule at run time (a TernaryError names an access that meets a running transfer).
"""

from .isa import ROW_SPACES, SDRAM_WORD_BYTES, AttnFn, Dyn, Op, Space, XFn, xfer_bytes

_NOT_MEMORY = (Space.NONE, Space.SR, Space.IR)


def static_access(ins, limits, layout):
    """``[(space, first, end)]`` that ``ins`` may read or write at any position (``end``
    None: the whole space). Conservative: it may name more than the instruction touches."""
    f, op = ins.f, ins.op
    out = []

    def add(space, addr, count, dyn):
        space = Space(space) if space in Space._value2member_map_ else space
        if space in _NOT_MEMORY:
            return
        out.append((space, addr, None if dyn or f.get("npos") else addr + max(count, 1)))

    sel = f.get("dyn_sel", 0)
    if op == Op.MATVEC:
        out.append((Space.WGT, f["base"], f["base"] + layout.words(max(f["m"], 1), max(f["k"], 1))))
        out.append((Space.ACT, 0, None))
        add(f["d_space"], f["d_addr"], f["m"], False)
    elif op in (Op.VOP, Op.SVOP, Op.DOT, Op.AXPY, Op.ATTN):
        n = f["n"]
        rows = op in (Op.DOT, Op.AXPY, Op.ATTN)
        a_count = f["len"] if op in (Op.DOT, Op.ATTN) and not (op == Op.ATTN and ins.fn == AttnFn.PV) else n
        add(f["a_space"], f["a_addr"], a_count, sel == Dyn.A)
        b_count = (n << f["stride"]) if rows else 2 * n
        add(f["b_space"], f["b_addr"], b_count, sel == Dyn.B)
        d_count = f["len"] if op == Op.AXPY or (op == Op.ATTN and ins.fn == AttnFn.PV) else n
        add(f["d_space"], f["d_addr"], d_count, sel == Dyn.D)
        if op == Op.ATTN:
            out.append((Space.KVS, 0, None))                # PV's value scales
        if rows and f["b_space"] not in ROW_SPACES:
            out.append((Space(f["b_space"]), 0, None))
    elif op == Op.SOP:
        add(f["s_space"], f["s_addr"], 1, bool(sel))
    elif op == Op.XFER and ins.fn != XFn.WAIT:
        add(f["c_space"], f["c_addr"], 0, True)
    return out


def _meets(a, b):
    """Whether two (space, first, end) ranges may share a word (end None: unbounded)."""
    inf = float("inf")
    return a[0] == b[0] and a[1] < (inf if b[2] is None else b[2]) \
        and b[1] < (inf if a[2] is None else a[2])


def _xfer_words(ins, layout):
    """The (space, first, end) an XFER IN fills (end None if it depends on the position)."""
    f = ins.f
    space = Space(f["c_space"])
    if f["npos"] or f["c_dyn"]:
        return (space, 0, None)
    words = f["n"] * SDRAM_WORD_BYTES // xfer_bytes(space, layout.word_bytes)
    return (space, f["c_addr"], f["c_addr"] + words)


def hoist_transfers(instrs, limits, layout):
    """``instrs`` with each XFER IN moved up as far as :func:`static_access` allows (see
    the module's docstring); everything else keeps its order."""
    out = []
    for ins in instrs:
        if ins.op != Op.XFER or ins.fn != XFn.IN:
            out.append(ins)
            continue
        mine = _xfer_words(ins, layout)
        at = len(out)
        while at > 0:
            prev = out[at - 1]
            if prev.op in (Op.XFER, Op.SAMPLE, Op.END):
                break
            if any(_meets(mine, r) for r in static_access(prev, limits, layout)):
                break
            at -= 1
        out.insert(at, ins)
    return out
