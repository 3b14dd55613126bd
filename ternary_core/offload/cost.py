"""Op-level ideal cycles of a compiled step program: each executed instruction's work
divided by the VM's parallel units, summed with no overlap (the yardstick of issue 12:
"device cycles within 1.3x of the op-level ideal").

Units (docs/device-isa.md): VOP and SVOP 1 element per cycle; SOP 1 per cycle; DOT and
AXPY :data:`~.isa.DOT_LANES` int8 lanes (a row of ``len`` bytes takes
``ceil(len / 32)`` cycles), and so does each ATTN pass (one key a row); MATVEC the
engine's ``ceil(m/rows) * ceil(k/cols)`` tiles; SAMPLE TOPK two passes over the logits
(a selection and a mask), DRAW one; EMIT, TCHECK and END one cycle.

:func:`program_cost` is the program-level ideal of what the compiler emits.
:func:`plan_cycles` is the plan-level ideal of docs/model-offload.md: each op of the
integer decode (:mod:`ternary_core.integer.runner`), its work divided by the parallel
units of the planned device (:class:`DeviceLanes`), no program; it is the design target
the program's cost is compared with.
"""

from dataclasses import dataclass

from .isa import DOT_LANES, Op, SampleFn, XFn
from .semantics import element_count, runs

# Cycles from a transfer's start to its first word (a burst's request through the
# controller, a row activation and the CAS latency, the clock crossing; about what the
# two-clock tests of docs/sdram.md measure) for the projections.
SDRAM_LATENCY = 20


def _ceil(a, b):
    return -(-a // b)


def instr_cost(ins, pos, engine, *, gen=True, sampled=False, top_k=0, vop_lanes=1,
               svop_lanes=1, dot_lanes=DOT_LANES):
    """Ideal cycles of one instruction in the step at ``pos`` (0 if it is skipped);
    ``*_lanes``: elements per cycle of the VM's units (the plan's 1, 1, 32 by default)."""
    if ins.op == Op.END:
        return 1
    if ins.op == Op.NOP or not runs(ins, gen=gen, sampled=sampled):
        return 0
    n = element_count(ins, pos)
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
    if ins.op == Op.XFER:       # its issue; the transfer itself runs beside (sdram_cycles)
        return 1
    raise ValueError(f"no cost for {ins.op.name}")


def sdram_words(program, pos, *, gen=True, sampled=False):
    """SDRAM words the step at ``pos`` moves (XFER IN and OUT)."""
    return sum(element_count(i, pos) for i in program.instrs
               if i.op == Op.XFER and i.fn != XFn.WAIT and runs(i, gen=gen, sampled=sampled))


def overlapped_cycles(program, pos, *, words_per_cycle, latency=SDRAM_LATENCY, gen=True,
                      sampled=False, top_k=0, engine=None, **lanes):
    """Cycles of the step at ``pos`` with its transfers running beside the machine as
    XFER says (a projection, not a measurement): each instruction costs its ideal
    (:func:`instr_cost`), a transfer ``latency + words / words_per_cycle`` of the
    transfer unit's time, started when the one before has finished; WAIT and END wait
    for it. With no transfers it is the op-level ideal."""
    engine = engine or program.mm.engine
    t = busy = 0.0
    for ins in program.instrs:
        if ins.op == Op.XFER and runs(ins, gen=gen, sampled=sampled):
            t = max(t, busy)
            if ins.fn != XFn.WAIT:
                t += 1
                busy = t + latency + element_count(ins, pos) / words_per_cycle
            continue
        if ins.op == Op.END:
            t = max(t, busy)
        t += instr_cost(ins, pos, engine, gen=gen, sampled=sampled, top_k=top_k, **lanes)
    return int(round(t))


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


# ---- the plan-level ideal ------------------------------------------------------------

@dataclass(frozen=True)
class DeviceLanes:
    """Parallel units of the planned device (per cycle)."""
    ternary_macs: int = 128      # the matvec engine, rows x cols (ULX3S today: 8 x 16)
    attention_macs: int = 64     # int8 x int8: one key of two query heads (2 x head_dim 32)
    lm_head_macs: int = 16       # int8 x int8, 16 bytes of lm_head per cycle
    vector_lanes: int = 4        # element-wise units (one element per cycle each)
    scalar_ops: int = 1          # ScalarUnit requests per cycle


# Element passes over the ffn of each GLU (by ``hidden_act``) in the plan: relu2 the ranges
# of relu(g) and of u and the product; silu also g's sigmoid product (z = g's Q4.12, the
# sigmoid and g * sigmoid in one pass, with its range).
GLU_PASSES = {"relu2": 3, "silu": 4}


def vector_elements(config):
    """Element-cycles of the element-wise passes per token (one lane)."""
    c = config
    d, f, L = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    kv = c.num_key_value_heads * c.head_dim
    norm = 3                                   # range, gain + sum of squares, quantize
    per_layer = (norm * d                      # input_layernorm
                 + (d + kv) // 2               # RoPE on q and k (pairs)
                 + 2 * (d + 2 * kv)            # per-head int8 quantizer of q, k, v
                 + 2 * d                       # merge heads (range, align)
                 + norm * d                    # attn_sub_norm
                 + d                           # o_proj rescale + residual add
                 + norm * d                    # post_attention_layernorm
                 + GLU_PASSES[c.hidden_act] * f   # the GLU
                 + norm * f                    # ffn_sub_norm
                 + d)                          # down_proj rescale + residual add
    return L * per_layer + norm * d + d        # final norm, embedding


def scalar_ops(config):
    """Scalar-unit requests per token (throughput bound; their dependent chains add
    latency, see docs/model-offload.md)."""
    c = config
    L, nh, nkv = c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads
    norm = 15           # shift, quantizer 5, variance 5, r 4
    head_quant = 6      # from_int, recip, 127/max, max/127, shift, times the row scale
    per_layer = 4 * norm + head_quant * (nh + 2 * nkv) + 7 + 3 * nh + nh + 3
    return L * per_layer + norm


def plan_cycles(config, context, lanes=DeviceLanes()):
    """``{op: cycles}`` for the token at position ``context - 1`` (attention over
    ``context`` keys), and ``"total"``."""
    c = config
    t = int(context)
    d, f, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    kv = nkv * hd
    ternary = L * (d * d + 2 * kv * d + d * d + 2 * f * d + d * f)
    out = {
        "ternary matvecs": -(-ternary // lanes.ternary_macs),
        # scores q.k, then exp2 and P.V: two passes over the keys
        "attention": -(-2 * L * nh * t * hd // lanes.attention_macs),
        "lm_head": -(-V * d // lanes.lm_head_macs),
        "element-wise passes": -(-vector_elements(c) // lanes.vector_lanes),
        "scalar unit": -(-scalar_ops(c) // lanes.scalar_ops),
        # argmax reads the lm_head's logits as they leave it: no cycles of its own
    }
    out["total"] = sum(out.values())
    return out
