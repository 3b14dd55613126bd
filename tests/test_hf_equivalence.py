"""Our numpy BitNet against HF transformers' BitNetForCausalLM, through `ternary import`."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="installed by `make test` (reference extra)")
transformers = pytest.importorskip("transformers", reason="installed by `make test` (reference extra)")

from host.cli import main  # noqa: E402
from ternary_core.model.file import load_model  # noqa: E402
from ternary_core.reference import BitNetRunner  # noqa: E402


def build_hf_checkpoint(folder, seed, packed=True, hf_init=False, hidden_act="relu2"):
    """A random small BitNet built, packed and saved by transformers itself: weights
    N(0, 1) and norms U(0.5, 1.5), or transformers' own initialization with ``hf_init``;
    ``hidden_act`` the MLP's activation (relu2 or silu)."""
    import torch._dynamo
    from transformers import BitNetConfig, BitNetForCausalLM
    from transformers.integrations.bitnet import pack_weights, replace_with_bitnet_linear
    from transformers.utils.quantization_config import BitNetQuantConfig

    torch._dynamo.config.disable = True  # HF's BitLinear decorates with torch.compile
    g = torch.Generator().manual_seed(seed)
    cfg = BitNetConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       bos_token_id=None, eos_token_id=None, tie_word_embeddings=False,
                       hidden_act=hidden_act)
    torch.manual_seed(seed)
    model = BitNetForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in ([] if hf_init else model.named_parameters()):
            if p.dim() == 1:  # norms
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g))
    if packed:
        qc = BitNetQuantConfig(linear_class="bitlinear", quantization_mode="offline",
                               modules_to_not_convert=["lm_head"])
        floats = {n: m.weight.detach().clone() for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and "layers" in n}
        model = replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"], quantization_config=qc)
        with torch.no_grad():  # the new BitLinears live on the meta device: give them tensors
            for n, m in model.named_modules():
                if type(m).__name__ == "BitLinear":
                    w = floats[n]
                    scale = 1.0 / w.abs().mean().clamp(min=1e-5)
                    trits = (w * scale).round().clamp(-1, 1)
                    m.weight = torch.nn.Parameter(pack_weights(trits.clone()), requires_grad=False)
                    m.weight_scale = scale.reshape(1).float()
        model.config.quantization_config = qc
    model.save_pretrained(folder)
    return model


# A fixed checkpoint, not one per run: torch and numpy sum in different orders, so on a
# random N(0,1) model an activation now and then lies within an ulp of a rounding boundary
# of the int8 quantizer, and that one flip changes every logit after it (run seeds 22357 and
# 39031 did so when the checkpoint followed the run seed). Agreement over many seeds is measured statistically in
# tests/test_integer_model.py (2,048 positions); this test holds the exact path to 2e-4.
CHECKPOINT_SEED = 1


@pytest.mark.parametrize("hidden_act", ["relu2", "silu"])
def test_logits_and_greedy_match_transformers(tmp_path, capsys, hidden_act):
    seed = CHECKPOINT_SEED
    hf = build_hf_checkpoint(tmp_path / "hf", seed, packed=True, hidden_act=hidden_act)
    out = tmp_path / "model.safetensors"
    assert main(["import", str(tmp_path / "hf"), "-o", str(out)]) == 0
    assert f"activation {hidden_act}," in capsys.readouterr().err
    model = load_model(out)
    assert model.config.hidden_act == hidden_act

    ids = np.random.default_rng(seed).integers(0, 256, size=24)
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)[None]).logits[0].numpy()
    runner = BitNetRunner(model)
    ours = np.stack([runner.step(int(t)) for t in ids])
    scale = np.abs(ref).max()
    print(f"max |logit diff| {np.abs(ours - ref).max():.3g} of max |logit| {scale:.3g}")
    np.testing.assert_allclose(ours, ref, atol=2e-4 * scale, rtol=0)

    x = torch.from_numpy(ids[:8])[None]
    with torch.no_grad():  # the explicit mask: else generate masks every id equal to pad_token_id
        cont = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=16,
                           do_sample=False, pad_token_id=0)[0, 8:].tolist()
        full = hf(torch.tensor([list(ids[:8]) + cont])).logits[0].numpy()
    # Teacher-forced on transformers' own greedy continuation: our choice at every step must
    # be transformers' choice, except where its top two logits are closer than the logit
    # tolerance above (a near-tie that float rounding order may break either way; a random
    # tiny model has some). Feeding its continuation keeps one near-tie from derailing the rest.
    runner.reset()
    compared = 0
    for p, t in enumerate(list(ids[:8]) + cont[:-1]):
        logits = runner.step(int(t))
        if p < 7:
            continue
        top2 = np.sort(full[p])[-2:]
        if top2[1] - top2[0] <= 2 * 2e-4 * scale:
            print(f"step {p - 7}: near-tie in transformers' logits ({top2[1] - top2[0]:.2g}), not compared")
            continue
        assert int(np.argmax(logits)) == cont[p - 7], f"greedy step {p - 7} differs"
        compared += 1
    assert compared >= 12, f"only {compared} of 16 greedy steps were clear enough to compare"


def test_float_import_quantizes_like_hf(tmp_path, seed):
    from ternary_core.quant import quantize_weights

    hf = build_hf_checkpoint(tmp_path / "hf", seed % (1 << 31), packed=False)
    out = tmp_path / "model.safetensors"
    assert main(["import", str(tmp_path / "hf"), "-o", str(out)]) == 0
    model = load_model(out)
    w = hf.model.layers[1].mlp.down_proj.weight.detach().numpy()
    trits, scale = quantize_weights(w)
    np.testing.assert_array_equal(model.bitlinears["model.layers.1.mlp.down_proj"].trits, trits)
    # the HF transcription of WeightQuant gives the same trits
    s = 1.0 / torch.from_numpy(w).abs().mean().clamp(min=1e-5)
    np.testing.assert_array_equal(trits, (torch.from_numpy(w) * s).round().clamp(-1, 1).numpy())
