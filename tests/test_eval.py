"""``ternary eval``: windows, the vectorized scorer, the loss on every backend against an
independent step-by-step computation, the held-out split, tokenizer-less models."""

import json
import math

import numpy as np
import pytest
from safetensors.numpy import save_file

from host.cli import main
from host.eval import consecutive_windows
from host.generate import load
from ternary_core.corpus import corpus_split, split_point
from ternary_core.integer import IntegerRunner, compile_model
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import float_tensor_shapes, save_model
from ternary_core.reference import BitNetRunner
from tests.test_generate_window import TINY, tiny_model

KEYS = {"loss_nats_per_byte", "bits_per_byte", "perplexity", "top1_agreement", "positions"}
TEXT = (b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        b"You are all resolved rather to die than to famish?\n")


def _json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _error(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def stepped_nll(make_runner, ids, context, integer=False):
    """Per-position nats and argmax, stepping a fresh runner through each window of
    ``context`` tokens (the windowing written out here, not taken from host.eval)."""
    nats, top = [], []
    for start in range(0, len(ids) - 1, context):
        runner = make_runner()
        for t in range(start, min(start + context, len(ids) - 1)):
            z = np.asarray(runner.step(ids[t]), np.float64)
            if integer:
                z = z * runner.last_logit_scale
            top.append(int(np.argmax(z)))
            nats.append(math.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[t + 1]])
    return np.array(nats), np.array(top)


@pytest.fixture
def tiny(tmp_path, rng):
    model = tiny_model(rng, context=16)
    path = tmp_path / "tiny.safetensors"
    save_model(path, model)
    text = tmp_path / "text.txt"
    text.write_bytes(TEXT)
    return model, str(path), str(text)


@pytest.mark.parametrize("n, ctx", [(2, 4), (5, 4), (9, 4), (10, 4), (300, 256), (1000, 7)])
def test_consecutive_windows_predict_every_token_but_the_first_once(n, ctx):
    spans = consecutive_windows(n, ctx)
    targets = [t for s, e in spans for t in range(s + 1, e + 1)]
    assert targets == list(range(1, n))
    assert all(0 < e - s <= ctx for s, e in spans)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_window_scorer_equals_stepping_on_the_shipped_model():
    model, tok = load()
    ids = tok.encode("KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer "
                     "by this sun of York;\nAnd all the clouds that lour'd upon our house\nIn the "
                     "deep bosom of the ocean buried.\nNow are our brows bound with victorious "
                     "wreaths;\nOur bruised arms hung up for monuments;")[:256]
    runner = BitNetRunner(model)
    scored = runner.score(ids)
    assert runner.pos == 0
    stepped = np.stack([runner.step(t) for t in ids])
    diff = np.abs(scored - stepped).max(axis=1)
    # float32 sums in another order agree to ~1e-5; where that flips one int8 of an
    # activation quantizer by 1 (here first at position 19), that row and, through the KV
    # cache, later rows move by up to ~0.15 of a logit range of ~40
    assert diff[0] < 1e-4 and diff.max() < 0.4
    top2 = np.sort(stepped, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.4
    assert (scored.argmax(1) == stepped.argmax(1))[clear].all()


def test_reference_eval_equals_step_by_step_loss(tiny, capsys):
    model, path, text = tiny
    out, err = _json(capsys, ["eval", "--model", path, "--text", text, "--json"])
    nats, top = stepped_nll(lambda: BitNetRunner(model, max_len=16), list(TEXT), 16)
    assert out["positions"] == len(TEXT) - 1 == nats.size
    assert out["windows"] == -(-(len(TEXT) - 1) // 16) and out["bytes"] == len(TEXT) - 1
    assert out["loss_nats_per_token"] == pytest.approx(nats.mean(), rel=1e-4)
    assert out["loss_nats_per_byte"] == pytest.approx(nats.sum() / (len(TEXT) - 1), rel=1e-4)
    assert out["bits_per_byte"] == pytest.approx(out["loss_nats_per_byte"] / math.log(2))
    assert out["perplexity"] == pytest.approx(math.exp(out["loss_nats_per_token"]))
    assert out["top1_agreement"] == 1.0
    assert out["top1_accuracy"] == pytest.approx(np.mean(top == np.array(list(TEXT[1:]))), abs=0.02)
    assert out["split"] == "all" and "\reval: " in err and err.endswith("\n")


def test_sim_eval_steps_through_the_device_and_equals_stepping(tiny, capsys):
    model, path, text = tiny
    out, _ = _json(capsys, ["eval", "--model", path, "--text", text, "--bytes", "40",
                            "--backend", "sim", "--check", "--json"])
    nats, _ = stepped_nll(lambda: BitNetRunner(model, max_len=16), list(TEXT[:40]), 16)
    assert out["backend"] == "sim" and out["positions"] == 39
    assert out["loss_nats_per_token"] == pytest.approx(nats.mean(), rel=1e-9)
    assert out["top1_agreement"] >= 0.95  # against the vectorized float scorer


def test_integer_eval_equals_stepping_the_integer_decode(tiny, capsys):
    model, path, text = tiny
    out, _ = _json(capsys, ["eval", "--model", path, "--text", text, "--backend", "integer",
                            "--json"])
    compiled = compile_model(model)
    nats, top = stepped_nll(lambda: IntegerRunner(compiled, max_len=16), list(TEXT), 16,
                            integer=True)
    _, ref_top = stepped_nll(lambda: BitNetRunner(model, max_len=16), list(TEXT), 16)
    assert out["backend"] == "integer" and out["positions"] == nats.size
    assert out["loss_nats_per_token"] == pytest.approx(nats.mean(), rel=1e-9)
    assert out["top1_agreement"] == pytest.approx(np.mean(top == ref_top), abs=0.02)


@pytest.mark.parametrize("backend", ["reference", "integer"])
def test_shipped_model_eval_json_has_the_figures(capsys, tmp_path, backend):
    text = tmp_path / "t.txt"
    text.write_bytes(TEXT * 3)
    out, _ = _json(capsys, ["eval", "--backend", backend, "--text", str(text), "--json"])
    assert KEYS <= out.keys() and out["positions"] == 3 * len(TEXT) - 1
    assert 0.5 < out["loss_nats_per_byte"] < 3 and 1 < out["perplexity"] < 20
    assert 0.9 <= out["top1_agreement"] <= 1.0


def test_split_is_the_trainers_last_tenth():
    assert split_point(1_115_394) == 1_003_854  # the README's 90/10 split of tinyshakespeare
    data = bytes(range(100)) * 3
    assert corpus_split(data, "val") == data[270:] and corpus_split(data, "train") == data[:270]
    assert corpus_split(data, "all") == data


def test_default_text_is_the_held_out_split_of_the_corpus(tiny, tmp_path, capsys, monkeypatch):
    _, path, _ = tiny
    corpus = tmp_path / "shared" / "data" / "tinyshakespeare.txt"  # where the default points
    corpus.parent.mkdir(parents=True)
    corpus.write_bytes(TEXT * 4)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    out, _ = _json(capsys, ["eval", "--model", path, "--json"])
    held_out = len(TEXT * 4) - split_point(len(TEXT * 4))
    assert out["split"] == "val" and out["positions"] == held_out - 1
    out, _ = _json(capsys, ["eval", "--model", path, "--json", "--split", "train", "--bytes", "50"])
    assert out["split"] == "train" and out["positions"] == 49
    corpus.unlink()
    assert "corpus: ../shared/data/tinyshakespeare.txt is not a file" in \
        _error(capsys, ["eval", "--model", path])


def test_tokenizer_none_evaluates_ids(tiny, tmp_path, capsys):
    model, _, _ = tiny
    model.tokenizer = {"type": "none"}
    path = tmp_path / "notok.safetensors"
    save_model(path, model)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(", ".join(map(str, TEXT[:20])) + "\n" + " ".join(map(str, TEXT[20:40])))
    out, _ = _json(capsys, ["eval", "--model", str(path), "--ids", str(ids_file), "--json"])
    nats, _ = stepped_nll(lambda: BitNetRunner(model, max_len=16), list(TEXT[:40]), 16)
    assert out["positions"] == 39
    assert out["loss_nats_per_token"] == pytest.approx(nats.mean(), rel=1e-4)
    assert out["bytes"] is None and out["bits_per_byte"] is None and out["perplexity"] > 1
    assert "has no tokenizer" in _error(capsys, ["eval", "--model", str(path)])


@pytest.mark.parametrize("content, extra, message", [
    ("1 2 x", [], "token ids must be integers"),
    ("", [], "no token ids given"),
    ("7", [], "at least 2 tokens"),
    ("1 2 256", [], "token id 256 (position 2) is outside the vocabulary"),
    ("1 2 3", ["--bytes", "10"], "--split and --bytes apply to text"),
])
def test_bad_ids_are_one_line_errors(tiny, tmp_path, capsys, content, extra, message):
    _, path, _ = tiny
    f = tmp_path / "ids.txt"
    f.write_text(content)
    assert message in _error(capsys, ["eval", "--model", path, "--ids", str(f)] + extra)


def test_bad_text_arguments_are_one_line_errors(tiny, tmp_path, capsys):
    _, path, text = tiny
    assert "--text: " in _error(capsys, ["eval", "--model", path, "--text", str(tmp_path / "nope")])
    assert "--bytes must be at least 2" in _error(capsys, ["eval", "--model", path, "--text", text,
                                                           "--bytes", "1"])
    assert "--ids: " in _error(capsys, ["eval", "--model", path, "--ids", str(tmp_path)])


def test_hf_folder_without_tokenizer_imports_evaluates_and_generates(tmp_path, capsys, rng):
    """The issue's acceptance path: `ternary import` of a float HF BitNet folder with no
    tokenizer files (vocab 300, so not byte-level) writes tokenizer 'none'; the model
    then evaluates with --ids and generates with --prompt-ids."""
    cfg = BitNetConfig(vocab_size=300, max_position_embeddings=16, **TINY)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bitnet", **cfg.to_dict()}))
    tensors = {n: (rng.normal(size=s) if len(s) == 2 else 1 + 0.1 * rng.random(s))
               .astype(np.float32) for n, s in float_tensor_shapes(cfg).items()}
    tensors.update({n + ".weight": rng.normal(size=s).astype(np.float32)
                    for n, s in cfg.bitlinear_shapes().items()})
    save_file(tensors, str(folder / "model.safetensors"))
    model_path = str(tmp_path / "m.safetensors")
    assert main(["import", str(folder), "-o", model_path]) == 0
    assert load(model_path)[0].tokenizer == {"type": "none"}

    ids = [int(t) for t in rng.integers(0, 300, 40)]
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)))
    out, _ = _json(capsys, ["eval", "--model", model_path, "--ids", str(tmp_path / "ids.txt"),
                            "--json"])
    assert out["positions"] == 39 and out["bits_per_byte"] is None
    assert 0 < out["loss_nats_per_token"] < 50 and out["top1_agreement"] == 1.0
    gen, _ = _json(capsys, ["generate", "--model", model_path, "--prompt-ids", "299,0,150",
                            "--tokens", "20", "--json"])
    assert len(gen["token_ids"]) == 20 and max(gen["token_ids"]) < 300
    assert gen["window_shifts"] == [16]
    assert "--prompt-ids" in _error(capsys, ["generate", "--model", model_path, "--prompt", "hi"])
