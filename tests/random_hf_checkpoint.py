"""Build a small random BitNet with transformers, for measuring the integer decode
(docs/integer-error-analysis.md). Run from the repository root:

    python -m tests.random_hf_checkpoint OUT [--init hf|normal] [--embed-std S] [--heads H]
        [--act relu2|silu] [--probe-positions N] ...

Writes ``OUT/hf`` (``save_pretrained``, BitLinears packed offline as
tests/test_hf_equivalence.py does), ``OUT/m.safetensors`` (``ternary import`` of it, which
prints the integer decode's probe),
``OUT/ids.txt`` (random token ids for ``ternary eval --ids``) and ``OUT/hf_logits.npy``
(transformers' own logits on the eval windows of those ids).

``--init hf``: transformers' initialization (N(0, 0.02) weights, unit norms) with the
embeddings and lm_head drawn N(0, embed_std). ``--init normal``: every weight N(0, 1) and
the norms U(0.5, 1.5), as ``build_hf_checkpoint``'s default, embeddings N(0, embed_std).
"""

import argparse
from pathlib import Path

import numpy as np


def build_checkpoint(folder, *, hidden=64, heads=4, kv=2, ffn=160, vocab=97, layers=2, ctx=128,
                     embed_std=1.0, init="hf", seed=0, hidden_act="relu2", tied=False,
                     fp16_scales=False):
    """Build the checkpoint (``init``, ``embed_std`` as above; ``hidden_act`` relu2 or silu;
    ``tied`` lm_head to the embeddings; ``fp16_scales``: BitLinear scales whose inverse fp16
    holds exactly, as GGUF's TQ blocks and F16 values store it) and ``save_pretrained`` it
    into ``folder`` (unless None); return the transformers model."""
    import torch
    import torch._dynamo
    from transformers import BitNetConfig, BitNetForCausalLM
    from transformers.integrations.bitnet import pack_weights, replace_with_bitnet_linear
    from transformers.utils.quantization_config import BitNetQuantConfig

    torch._dynamo.config.disable = True   # HF's BitLinear decorates with torch.compile
    torch.manual_seed(seed)
    cfg = BitNetConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, max_position_embeddings=ctx, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       bos_token_id=None, eos_token_id=None, tie_word_embeddings=tied,
                       hidden_act=hidden_act)
    model = BitNetForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, prm in model.named_parameters():
            if "embed_tokens" in n or "lm_head" in n:
                prm.copy_(embed_std * torch.randn(prm.shape, generator=g))
            elif init == "normal":
                prm.copy_(0.5 + torch.rand(prm.shape, generator=g) if prm.dim() == 1
                          else torch.randn(prm.shape, generator=g))
    qc = BitNetQuantConfig(linear_class="bitlinear", quantization_mode="offline",
                           modules_to_not_convert=["lm_head"])
    floats = {n: m.weight.detach().clone() for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and "layers" in n}
    model = replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"], quantization_config=qc)
    with torch.no_grad():
        for n, m in model.named_modules():
            if type(m).__name__ == "BitLinear":
                w = floats[n]
                scale = 1.0 / w.abs().mean().clamp(min=1e-5)
                if fp16_scales:
                    scale = 1.0 / (1.0 / scale).half().float()
                m.weight = torch.nn.Parameter(pack_weights((w * scale).round().clamp(-1, 1).clone()),
                                              requires_grad=False)
                m.weight_scale = scale.reshape(1).float()
    model.config.quantization_config = qc
    if tied:
        model.tie_weights()
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
    return model


def main(argv=None):
    import torch

    from host.cli import main as ternary
    from ternary_core.corpus import consecutive_windows

    p = argparse.ArgumentParser(prog="python -m tests.random_hf_checkpoint")
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv", type=int, default=2)
    p.add_argument("--ffn", type=int, default=160)
    p.add_argument("--vocab", type=int, default=97)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--embed-std", type=float, default=1.0)
    p.add_argument("--init", choices=["hf", "normal"], default="hf")
    p.add_argument("--act", choices=["relu2", "silu"], default="relu2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-ids", type=int, default=2215)
    p.add_argument("--probe-positions", default="512", help="passed to ternary import")
    a = p.parse_args(argv)
    out = Path(a.out)
    model = build_checkpoint(out / "hf", hidden=a.hidden, heads=a.heads, kv=a.kv, ffn=a.ffn,
                             vocab=a.vocab, layers=a.layers, ctx=a.ctx, embed_std=a.embed_std,
                             init=a.init, seed=a.seed, hidden_act=a.act)
    assert ternary(["import", str(out / "hf"), "-o", str(out / "m.safetensors"),
                    "--probe-positions", a.probe_positions]) == 0
    ids = np.random.default_rng(a.seed).integers(0, a.vocab, a.n_ids)
    (out / "ids.txt").write_text(" ".join(map(str, ids)))
    with torch.no_grad():
        rows = [model(torch.from_numpy(ids[s:e])[None]).logits[0].numpy()
                for s, e in consecutive_windows(ids.size, a.ctx)]
    np.save(out / "hf_logits.npy", np.concatenate(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
