"""Generation past the context (sliding window) on every backend, UTF-8 text output,
and models without a tokenizer."""

import json

import numpy as np
import pytest

from host.cli import main
from host.generate import SlidingWindow, float_runner, generate, load
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import BitLinearWeights, save_model
from ternary_core.reference import BitNetRunner
from ternary_core.sampling import Sampler
from ternary_core.model.tokenizer import ByteTokenizer, NoTokenizer, TextStream, make_tokenizer
from tests.test_model_files import random_model

TINY = dict(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1)


def tiny_model(rng, context=16, **kw):
    return random_model(rng, BitNetConfig(max_position_embeddings=context, **{**TINY, **kw}))


def bigram_model(cycle, context=16):
    """A model whose greedy continuation is fixed: after token ``cycle[i]`` comes
    ``cycle[i+1]`` (wrapping). The BitLinears are scaled to nothing, so the residual
    stream is the token's embedding (a basis vector per token of the cycle), and the
    lm_head maps that basis vector to the next token."""
    cfg = BitNetConfig(max_position_embeddings=context, **TINY)
    m = random_model(np.random.default_rng(0), cfg)
    emb = np.zeros((cfg.vocab_size, cfg.hidden_size), np.float32)
    head = np.zeros_like(emb)
    for i, t in enumerate(cycle):
        emb[t, i] = 1.0
        head[cycle[(i + 1) % len(cycle)], i] = 10.0
    m.floats["model.embed_tokens.weight"], m.floats["lm_head.weight"] = emb, head
    m.floats["model.norm.weight"] = np.ones(cfg.hidden_size, np.float32)
    for name, b in m.bitlinears.items():
        m.bitlinears[name] = BitLinearWeights(b.trits, np.float32(1e9))
    return m


def _json(capsys, argv):
    capsys.readouterr()  # drop what came before (the seed fixture prints the seed)
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


# --- the window itself ------------------------------------------------------------------

class RecordingRunner:
    """Stands in for a model: records what it is fed, returns the position as 'logits'."""

    def __init__(self):
        self.pos, self.fed = 0, []

    def reset(self):
        self.pos = 0
        self.fed.append("reset")

    def step(self, token):
        self.fed.append(token)
        self.pos += 1
        return self.pos


def test_window_refeeds_the_last_half_context_when_full():
    r = RecordingRunner()
    w = SlidingWindow(r, context=8, capacity=100)
    for t in range(14):
        w.feed(t)
    # 0..7 fill the context; 8 moves the window to 5..8; 9..12 fill it; 13 moves it to 10..13
    assert r.fed == [0, 1, 2, 3, 4, 5, 6, 7, "reset", 5, 6, 7, 8, 9, 10, 11, 12,
                     "reset", 10, 11, 12, 13]
    assert w.shifts == [8, 13]


def test_window_of_a_context_of_one_keeps_the_newest_token():
    r = RecordingRunner()
    w = SlidingWindow(r, context=1, capacity=10)
    for t in range(3):
        w.feed(t)
    assert r.fed == [0, "reset", 1, "reset", 2] and w.shifts == [1, 2]


def test_greedy_generation_past_the_context_sees_exactly_its_window(rng):
    """Each token equals the argmax of a fresh model fed only the window the docstring
    promises (positions p-keep+1..p after a shift at p), computed here from scratch."""
    model = tiny_model(rng, context=12)
    keep, ctx = 6, 12
    prompt = [int(t) for t in rng.integers(0, 256, 5)]
    res = generate(model, float_runner(model), prompt, 30, Sampler(0.0))
    seq = prompt + res.token_ids
    assert res.window_shifts == list(range(ctx, len(seq) - 1, ctx - keep + 1))
    for q in range(len(prompt) - 1, len(seq) - 1):  # q: the last token fed before seq[q+1]
        shifts = [s for s in res.window_shifts if s <= q]
        start = shifts[-1] - keep + 1 if shifts else 0
        fresh = BitNetRunner(model, max_len=ctx)
        for t in seq[start:q + 1]:
            logits = fresh.step(t)
        assert int(np.argmax(logits)) == seq[q + 1], f"position {q + 1}"


# --- every backend, through the CLI -----------------------------------------------------

def test_600_tokens_on_every_backend_same_ids_on_reference_and_sim(tmp_path, capsys, rng):
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_model(rng, context=32))
    common = ["generate", "--model", str(path), "--json", "--prompt-ids", "10,20,30",
              "--temperature", "0.9", "--seed", "7"]
    ref = _json(capsys, common + ["--tokens", "600", "--backend", "reference"])
    sim = _json(capsys, common + ["--tokens", "600", "--backend", "sim", "--check"])
    # the integer decode steps at ~60 tokens/s here: 100 tokens move its window 5 times
    integer = _json(capsys, common + ["--tokens", "100", "--backend", "integer"])
    for out in (ref, sim, integer):
        n = len(out["token_ids"])
        assert out["context"] == 32 and n in (100, 600)
        assert out["window_shifts"] == list(range(32, 3 + n - 1, 32 - 16 + 1))
    assert sim["token_ids"] == ref["token_ids"]
    assert integer["backend"] == "integer" and all(0 <= t < 256 for t in integer["token_ids"])


def test_shipped_model_generates_600_tokens_on_the_reference(capsys):
    out = _json(capsys, ["generate", "--json", "--tokens", "600", "--prompt", "ROMEO:",
                         "--seed", "2"])
    assert len(out["token_ids"]) == 600
    assert out["window_shifts"] == [256, 385, 514]  # 6 prompt + 599 fed tokens, keep 128


def test_integer_backend_json_has_token_ids_and_is_reproducible(capsys):
    argv = ["generate", "--backend", "integer", "--json", "--tokens", "8", "--seed", "5"]
    a, b = _json(capsys, argv), _json(capsys, argv)
    assert a["backend"] == "integer" and len(a["token_ids"]) == 8
    assert a["token_ids"] == b["token_ids"]


# --- UTF-8 text output ------------------------------------------------------------------

EURO = list("€".encode())  # three tokens of a byte tokenizer


def test_text_stream_holds_a_split_character_until_it_is_whole():
    s = TextStream(ByteTokenizer())
    assert [s.feed([t]) for t in EURO + [0x21]] == ["", "", "€", "!"]
    s = TextStream(ByteTokenizer())
    assert s.feed(EURO[:2]) == "" and s.finish() == "\ufffd"  # unfinished at the end


def test_text_stream_of_a_tokenizer_that_decodes_whole_sequences():
    class WholeOnly:  # like HF tokenizers: decode() of a partial character gives U+FFFD
        has_text = True

        def decode(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")

    s = TextStream(WholeOnly())
    assert "".join(s.feed([t]) for t in EURO + EURO + [0x21]) + s.finish() == "€€!"


@pytest.mark.parametrize("prompt, tokens, text", [
    (["--prompt", "€"], 9, " € € "),
    (["--prompt-ids", "226,130"], 10, "€ € € "),  # the prompt's euro sign ends in the output
    (["--prompt", "€"], 7, " € \ufffd"),  # ends in the middle of a character
], ids=["whole-prompt", "prompt-ends-mid-character", "output-ends-mid-character"])
def test_printed_text_equals_json_text_when_tokens_split_characters(tmp_path, capsys, prompt,
                                                                    tokens, text):
    path = tmp_path / "euro.safetensors"
    save_model(path, bigram_model([0xE2, 0x82, 0xAC, 0x20]))  # "€ ", the euro sign in 3 tokens
    argv = ["generate", "--model", str(path), "--temperature", "0", "--tokens", str(tokens),
            *prompt]
    out = _json(capsys, argv + ["--json"])
    assert out["text"] == text
    assert main(argv) == 0
    head = "€" if prompt[0] == "--prompt" else ""
    assert capsys.readouterr().out == head + text + "\n"


# --- models without a tokenizer ---------------------------------------------------------

def test_tokenizer_none_generates_from_prompt_ids_and_prints_ids(tmp_path, capsys, rng):
    m = tiny_model(rng)
    m.tokenizer = {"type": "none"}
    path = tmp_path / "notok.safetensors"
    save_model(path, m)
    assert isinstance(make_tokenizer(load(path)[0].tokenizer), NoTokenizer)
    common = ["generate", "--model", str(path), "--prompt-ids", "1, 2 3", "--tokens", "5",
              "--seed", "1"]
    out = _json(capsys, common + ["--json"])
    assert out["prompt_ids"] == [1, 2, 3] and len(out["token_ids"]) == 5 and out["text"] is None
    capsys.readouterr()
    assert main(common) == 0
    printed = capsys.readouterr().out
    assert printed.split() == [str(t) for t in [1, 2, 3] + out["token_ids"]]


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "hi"], "--prompt: this model has no tokenizer"),
    ([], "--prompt: this model has no tokenizer"),
    (["--prompt-ids", "1,x"], "argument --prompt-ids: expected comma-separated token ids"),
    (["--prompt-ids", " , "], "argument --prompt-ids: expected comma-separated token ids"),
])
def test_tokenizer_none_without_ids_is_a_one_line_error(tmp_path, capsys, rng, argv, message):
    m = tiny_model(rng)
    m.tokenizer = {"type": "none"}
    path = tmp_path / "notok.safetensors"
    save_model(path, m)
    assert main(["generate", "--model", str(path), "--tokens", "2"] + argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    # one error line; argparse's own (bad --prompt-ids) comes after its usage lines
    assert message in lines[-1] and "Traceback" not in err
    assert len(lines) == 1 or all(ln.startswith(("usage:", " ")) for ln in lines[:-1])
