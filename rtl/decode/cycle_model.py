"""The op-level ideal cycles of one decode token on the whole-model device: for each op
of the integer decode (:mod:`ternary_core.integer.runner`), its work divided by the
parallel units the device gives it, summed over ops (no overlap assumed).

This is the yardstick of issue 12 ("device cycles within 1.3x of the op-level ideal");
the lane counts are the device plan of docs/model-offload.md, not a built device yet.
The element-wise pass counts follow the units of this package: a norm is three passes
over its row (range of x; normalized x times gain with the sum of squares; quantize), a
per-head int8 quantizer two (range, quantize), and so on (see :func:`vector_elements`).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceLanes:
    """Parallel units of the planned device (per cycle)."""
    ternary_macs: int = 128      # the matvec engine, rows x cols (ULX3S today: 8 x 16)
    attention_macs: int = 64     # int8 x int8: one key of two query heads (2 x head_dim 32)
    lm_head_macs: int = 16       # int8 x int8, 16 bytes of lm_head per cycle
    vector_lanes: int = 4        # element-wise units (one element per cycle each)
    scalar_ops: int = 1          # ScalarUnit requests per cycle


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
                 + 3 * f                       # GLU: ranges of relu(g) and u, product
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


def ideal_cycles(config, context, lanes=DeviceLanes()):
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
