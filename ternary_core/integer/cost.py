"""What the integer decode costs in hardware, per op, for a model's shapes.

``decode_costs(config, context)`` counts, for one token at position ``context - 1`` (the
worst case: attention over the full context), every multiply the golden model does
(element-wise and scalar-unit alike), the ternary adds of the engine, the ROM table bits
and the memory bytes each op reads. The counts follow :mod:`.ops` and :mod:`.runner`
op by op; docs/integer-decode.md prints ``markdown_table`` of the shipped model, and a
test checks the two agree.

Scalar-unit multiplies per call (see :mod:`.fixed`): product 1, reciprocal 2, reciprocal
square root 3. A quantizer row costs 4 (reciprocal, ``127/max``, ``max/127``); a norm 12.
"""

from dataclasses import dataclass

from .fixed import EXP2_TABLE, RECIP_TABLE, RSQRT_TABLE, SIGMOID_TABLE
from .ops import ROPE_FRAC_BITS

SCALAR_BYTES = 3            # a stored scalar: 16-bit mantissa + 8-bit exponent
QUANT_ROW = 4               # scalar multiplies of one quant_int8 row
NORM = QUANT_ROW + 8        # norm_quant: quantizer + 3 (variance) + 3 (rsqrt) + 2 (r)


@dataclass(frozen=True)
class OpCost:
    op: str
    multiplies: int          # per token, every multiply (element-wise and scalar unit)
    widths: str              # the widest multiply's operands
    ternary_adds: int = 0    # the engine's multiply-free MACs
    table_bits: int = 0      # ROM
    memory_bytes: int = 0    # weights, constants and caches this op reads


def decode_costs(config, context=None):
    c = config
    t = int(context or c.max_position_embeddings)
    d, f, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    kv = nkv * hd
    norm_widths = L * (3 * d + f) + d
    n_norms = 4 * L + 1
    ternary = L * (d * d + 2 * kv * d + d * d + 2 * f * d + d * f)
    rows = [
        OpCost("embedding lookup (int8 row x row scale)", d, "8x16",
               memory_bytes=V * d + V * SCALAR_BYTES),
        OpCost("RMSNorm + absmax int8 quantizer (4 per layer + final)",
               3 * norm_widths + NORM * n_norms, "16x16", memory_bytes=2 * norm_widths),
        OpCost("ternary matvecs (the engine, 2-bit weights)", 0, "none", ternary_adds=ternary,
               memory_bytes=ternary // 4),
        OpCost("BitLinear rescale (one scale product per BitLinear, one multiply per "
               "residual-bound output)", L * (7 + 2 * d), "18x16"),
        OpCost("RoPE on q and k (cos/sin table)", L * 2 * (d + kv), "18x16",
               table_bits=2 * t * (hd // 2) * (ROPE_FRAC_BITS + 2)),
        OpCost("q/k/v per-head int8 quantizer, KV cache write",
               L * ((d + 2 * kv) + (QUANT_ROW + 1) * (nh + 2 * nkv)), "17x16",
               memory_bytes=L * 2 * t * kv + L * 2 * nkv * t * SCALAR_BYTES),
        OpCost("attention scores q.k (int8 x int8) and their scale", L * nh * t * (hd + 3),
               "20x16"),
        OpCost("softmax (exp2 table + shift, sum, reciprocal)", L * nh * 2, "16x16",
               table_bits=EXP2_TABLE.size * 16),
        OpCost("P.V (16-bit weights x int8 values)", L * nh * t * (hd + 1), "16x16"),
        OpCost("merge heads (align per-head scales)", L * d, "16x16"),
        (OpCost("squared ReLU x GLU", L * (2 * f + 2), "17x17") if c.hidden_act == "relu2" else
         # g to Q4.12, the sigmoid's interpolation, g * sigmoid, times u; one scale product
         OpCost("SiLU x GLU (sigmoid table + interpolation)", L * (4 * f + 1), "17x16",
                table_bits=SIGMOID_TABLE.size * 16)),
        OpCost("residual adds (int32, saturating)", 0, "none"),
        OpCost("lm_head (int8 x int8, per-row scale)", V * d + 2 * V, "21x16",
               memory_bytes=(0 if c.tie_word_embeddings else V * d + V * SCALAR_BYTES)),
        OpCost("sampling (temperature > 0; argmax: none), xorshift32", V + 1, "32x16"),
        OpCost("scalar unit ROM (reciprocal, reciprocal square root)", 0, "",
               table_bits=(RECIP_TABLE.size + RSQRT_TABLE.size) * 16),
    ]
    return rows


def markdown_table(config, context=None):
    rows = decode_costs(config, context)
    out = ["| op | multiplies / token | widest multiply | ternary adds / token | table bits "
           "| memory bytes |",
           "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r.op} | {r.multiplies:,} | {r.widths} | {r.ternary_adds:,} | "
                   f"{r.table_bits:,} | {r.memory_bytes:,} |")
    tot = OpCost("total", sum(r.multiplies for r in rows), "", sum(r.ternary_adds for r in rows),
                 sum(r.table_bits for r in rows), sum(r.memory_bytes for r in rows))
    out.append(f"| **total** | **{tot.multiplies:,}** | | **{tot.ternary_adds:,}** | "
               f"**{tot.table_bits:,}** | **{tot.memory_bytes:,}** |")
    return "\n".join(out)
