"""The trainer's checkpoints: a run interrupted after a checkpoint and resumed gives the
same model as a run that was never interrupted (a few steps of a tiny model, ~10 s)."""

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the 'train' extra (torch)")

import ternary_core.train as train_mod  # noqa: E402
from ternary_core.errors import TernaryError  # noqa: E402
from ternary_core.model.config import BitNetConfig  # noqa: E402
from ternary_core.train import TrainOptions, checkpoint_path, train  # noqa: E402

CFG = BitNetConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=32)


def options(**kw):
    return TrainOptions(**dict(dict(steps=6, batch=2, seq_len=16, threads=1, checkpoint_every=2,
                                    warmup=2, eval_batches=2), **kw))


def model_content(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def interrupt_after_checkpoints(monkeypatch, n):
    """Make training stop with Ctrl-C just after its ``n``-th checkpoint; return the
    list of the steps checkpointed."""
    saved = []
    real_save = train_mod.save_checkpoint

    def save_then_crash(path, *args):
        real_save(path, *args)
        saved.append(args[3])  # the step it holds
        if len(saved) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    return saved


@pytest.fixture
def corpus(tmp_path, seed):
    rng = np.random.default_rng(seed)
    p = tmp_path / "corpus.txt"
    p.write_bytes(rng.choice(list(b"abc de\n"), size=4000).astype(np.uint8).tobytes())
    return p


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, corpus, monkeypatch):
    whole, resumed = tmp_path / "whole.safetensors", tmp_path / "resumed.safetensors"
    train(corpus, whole, CFG, options())
    assert not checkpoint_path(whole).exists()  # a finished run leaves no checkpoint behind

    saved = interrupt_after_checkpoints(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(corpus, resumed, CFG, options())
    assert saved == [2, 4] and checkpoint_path(resumed).is_file() and not resumed.exists()
    monkeypatch.undo()

    report = train(corpus, resumed, CFG, options(resume=True))
    meta_a, a = model_content(whole)
    meta_b, b = model_content(resumed)
    assert meta_a == meta_b and a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert report["val_loss"] == json.loads((whole.parent / "whole.safetensors.json").read_text())["val_loss"]


def test_resume_refuses_other_options_and_shapes(tmp_path, corpus, monkeypatch):
    out = tmp_path / "m.safetensors"
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(corpus, out, CFG, options())
    monkeypatch.undo()
    with pytest.raises(TernaryError, match=r"--resume: .* was made with lr=0\.002, not 0\.001; give the same"):
        train(corpus, out, CFG, options(resume=True, lr=1e-3))
    other = BitNetConfig(hidden_size=64, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=32)
    with pytest.raises(TernaryError, match=r"--resume: .* is of a model with hidden_size=32, not 64"):
        train(corpus, out, other, options(resume=True))


@pytest.mark.parametrize("act", ["relu2", "silu"])
def test_train_act_gives_a_model_whose_reference_matches_the_trained_net(tmp_path, corpus, act,
                                                                         monkeypatch):
    """``ternary train --act``: the saved config names the activation, and the numpy
    reference of the exported model computes what the torch net trained (same GLU).

    Both run in float32 (the precision of training and of HF's reference) but sum in
    other orders, so a BitLinear input landing within an ulp of a rounding boundary of
    the activation quantizer (``x * input_scale`` at k + 1/2) may round apart: a
    legitimate tie that moves later logits by ~1e-3 of their size. So the net is run
    teacher-forced: at every BitLinear its own input must equal the reference's within
    float32 rounding, and it then goes on from the reference's input, so that both
    quantize the same numbers and every op is still checked."""
    from dataclasses import replace

    import torch

    import ternary_core.reference as reference_mod
    from host.cli import main
    from ternary_core.model.file import load_model
    from ternary_core.reference import BitNetRunner

    nets = []
    real_export = train_mod.export_model
    monkeypatch.setattr(train_mod, "export_model",
                        lambda net, *a: nets.append(net) or real_export(net, *a))
    out = tmp_path / "m.safetensors"
    assert main(["train", "--corpus", str(corpus), "-o", str(out), "--steps", "3", "--batch", "2",
                 "--seq-len", "16", "--threads", "1", "--checkpoint-every", "0", "--hidden-size",
                 "32", "--intermediate-size", "32", "--layers", "1", "--heads", "2",
                 "--kv-heads", "1", "--act", act]) == 0
    model = load_model(out)
    assert model.config.hidden_act == act
    ids = np.frombuffer(corpus.read_bytes()[:16], np.uint8).astype(np.int64)

    # the reference's BitLinear inputs, per layer those of q/k/v, o, gate/up, down in turn
    ref_inputs, real_quant = [], reference_mod.quantize_activations
    monkeypatch.setattr(reference_mod, "quantize_activations",
                        lambda x: ref_inputs.append(np.array(x, np.float32)) or real_quant(x))
    got = BitNetRunner(model).score(ids)
    monkeypatch.setattr(reference_mod, "quantize_activations", real_quant)
    assert len(ref_inputs) == 4 * model.config.num_hidden_layers
    slot = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": 1, "gate_proj": 2, "up_proj": 2,
            "down_proj": 3}

    def teacher_force(name):
        ref = ref_inputs[4 * int(name.split(".")[2]) + slot[name.rsplit(".", 1)[1]]]

        def hook(module, args):
            np.testing.assert_allclose(args[0][0].numpy(), ref, atol=1e-5 * np.abs(ref).max(),
                                       rtol=0, err_msg=f"the input of {name}")
            return (torch.from_numpy(ref)[None],)
        return hook

    net = nets[-1].float().eval()
    forced = [mod.register_forward_pre_hook(teacher_force(name))
              for name, mod in net.named_modules() if name.rsplit(".", 1)[-1] in slot]
    assert len(forced) == 7 * model.config.num_hidden_layers
    with torch.no_grad():
        want = net(torch.from_numpy(ids)[None])[0].numpy()
    scale = np.abs(want).max()
    print(f"max abs diff {np.abs(got - want).max():.3g} of max abs logit {scale:.3g}")
    np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=0)
    model.config = replace(model.config, hidden_act="silu" if act == "relu2" else "relu2")
    assert np.abs(BitNetRunner(model).score(ids) - want).max() > 1e-2 * scale
