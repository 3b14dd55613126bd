"""The rules every reader of a program applies to an instruction the same way: how many
elements it streams at a position, the offset its dynamic address mode adds, and whether
it runs in a step. The Python machine (:mod:`.machine`), the write sets of ``--check``
(:mod:`.check`) and the cost model (:mod:`.cost`) all ask here; docs/device-isa.md is
their prose form."""

from .isa import Cond, DynSrc, Op


def element_count(ins, pos):
    """Elements ``ins`` streams in the step at ``pos``: its ``n``, plus ``pos + 1`` (the
    keys so far) when ``npos`` is set; 0 for a class without ``n``. An XFER's are SDRAM
    words: ``n``, plus ``pos << npos_k`` when ``npos`` is set (the rows before ``pos``)."""
    f = ins.f
    if ins.op == Op.XFER:
        return f["n"] + ((pos << f["npos_k"]) if f["npos"] else 0)
    return f.get("n", 0) + (pos + 1 if f.get("npos") else 0)


def xfer_addresses(ins, pos, token):
    """``(on-chip word, SDRAM word)`` where an XFER starts in the step at ``pos`` feeding
    ``token``: each address plus ``(token or pos) << its dyn_k`` when its ``dyn`` bit is set."""
    f = ins.f
    dyn = token if f["dyn_src"] == DynSrc.TOKEN else pos
    return (f["c_addr"] + ((dyn << f["c_dyn_k"]) if f["c_dyn"] else 0),
            f["s_addr"] + ((dyn << f["s_dyn_k"]) if f["s_dyn"] else 0))


def dyn_offset(ins, sel, pos, token):
    """The address offset of operand ``sel`` (a :class:`~.isa.Dyn`) in the step at ``pos``
    feeding ``token``: ``(token or pos) << dyn_k`` if ``ins`` moves that operand, else 0."""
    f = ins.f
    if f.get("dyn_sel", 0) != sel:
        return 0
    return (token if f.get("dyn_src") == DynSrc.TOKEN else pos) << f.get("dyn_k", 0)


def runs(ins, *, gen, sampled):
    """Whether ``ins`` runs in a step that does (``gen``) or does not sample the next id,
    in a greedy or ``sampled`` run: ``gen_only`` and ``cond`` skip it otherwise."""
    f = ins.f
    if f.get("gen_only") and not gen:
        return False
    cond = f.get("cond", 0)
    return not ((cond == Cond.GREEDY and sampled) or (cond == Cond.SAMPLED and not sampled))
