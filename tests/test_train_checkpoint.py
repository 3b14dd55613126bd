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
