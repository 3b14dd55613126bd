"""The one table of a BitNet's tensor names (HF ``BitNetForCausalLM``'s, which our model
files keep), in the spirit of llama.cpp's llama-arch: every module that names a layer,
stacks BitLinears or maps GGUF names imports them from here.

A layer's BitLinears run in :data:`BITLINEARS` order. Those that read the same input are
stacked into one matrix (:data:`STACKS`): one matvec on a device, one product in the
reference. The host's matvec offload, the compiler's weight store and the integer decode
all stack in this order, so their results split the same way.
"""

EMBED = "model.embed_tokens"
FINAL_NORM = "model.norm"
LM_HEAD = "lm_head"

QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
O_PROJ = "self_attn.o_proj"
GATE_UP = ("mlp.gate_proj", "mlp.up_proj")
DOWN_PROJ = "mlp.down_proj"
BITLINEARS = (*QKV, O_PROJ, *GATE_UP, DOWN_PROJ)
# The BitLinears of a layer grouped by shared input, in execution order.
STACKS = (QKV, (O_PROJ,), GATE_UP, (DOWN_PROJ,))

INPUT_NORM = "input_layernorm"
ATTN_SUB_NORM = "self_attn.attn_sub_norm"
POST_ATTN_NORM = "post_attention_layernorm"
FFN_SUB_NORM = "mlp.ffn_sub_norm"
# A layer's RMSNorms in execution order (FFN_SUB_NORM is over the FFN width, the others
# over the hidden width).
NORMS = (INPUT_NORM, ATTN_SUB_NORM, POST_ATTN_NORM, FFN_SUB_NORM)

# llama.cpp's per-block GGUF names (``blk.N.<name>.weight``) -> ours.
GGUF_LINEARS = {"attn_q": QKV[0], "attn_k": QKV[1], "attn_v": QKV[2], "attn_output": O_PROJ,
                "ffn_gate": GATE_UP[0], "ffn_up": GATE_UP[1], "ffn_down": DOWN_PROJ}
GGUF_NORMS = {"attn_norm": INPUT_NORM, "ffn_norm": POST_ATTN_NORM,
              "attn_sub_norm": ATTN_SUB_NORM, "ffn_sub_norm": FFN_SUB_NORM}


def layer(i):
    """The name prefix of layer ``i``: ``"model.layers.{i}."``."""
    return f"model.layers.{i}."


def layer_stacks(i):
    """Layer ``i``'s :data:`STACKS` with full names."""
    return [tuple(layer(i) + n for n in stack) for stack in STACKS]


def norm_names(num_layers):
    """Every RMSNorm of a model (full names without ``.weight``), in execution order."""
    return [layer(i) + n for i in range(num_layers) for n in NORMS] + [FINAL_NORM]
