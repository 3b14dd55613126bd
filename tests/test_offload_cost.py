"""The plan-level ideal cycle model (ternary_core.offload.cost.plan_cycles), counted by hand."""

from dataclasses import replace

from ternary_core.model.config import BitNetConfig
from ternary_core.offload.cost import DeviceLanes, plan_cycles


def test_plan_cycles_count_a_small_config_by_hand():
    cfg = BitNetConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8)
    lanes = DeviceLanes(ternary_macs=8, attention_macs=8, lm_head_macs=4, vector_lanes=2)
    c = plan_cycles(cfg, 8, lanes)
    # hd = 8, kv = 8: ternary 2 * (256 + 256 + 256 + 1024 + 512) = 4608 adds
    assert c["ternary matvecs"] == 4608 // 8
    assert c["attention"] == 2 * 2 * 2 * 8 * 8 // 8          # 2 passes x L x heads x t x hd
    assert c["lm_head"] == 32 * 16 // 4
    # per layer 48 + 12 + 64 + 32 + 48 + 16 + 48 + 96 + 96 + 16 = 476; + 48 + 16
    assert c["element-wise passes"] == (2 * 476 + 64) // 2
    assert c["total"] == sum(v for k, v in c.items() if k != "total")
    assert plan_cycles(cfg, 1, lanes)["attention"] == 2 * 2 * 2 * 1 * 8 // 8
    # a SiLU GLU: one pass over the ffn more per layer (g's sigmoid product)
    silu = plan_cycles(replace(cfg, hidden_act="silu"), 8, lanes)
    assert silu["element-wise passes"] == (2 * (476 + 32) + 64) // 2
    assert {k: v for k, v in silu.items() if k not in ("element-wise passes", "total")} == \
        {k: v for k, v in c.items() if k not in ("element-wise passes", "total")}
