"""A GGUF's tokenizer.ggml.* metadata imports as the tokenizer it describes.

Real vocabularies are trained here with the ``tokenizers`` package on a few KB of the
Shakespeare corpus, written into a GGUF the way llama.cpp's convert_hf_to_gguf.py writes
them (``_set_vocab_gpt2``: model gpt2, pre, tokens, token types, merges, special ids;
``_set_vocab_sentencepiece``: model llama, tokens, scores, token types, special ids, no
merges), imported with ``ternary import`` and compared with the original tokenizer and
with transformers' GGUF tokenizer conversion (where transformers is installed).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFValueType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from host.cli import main
from ternary_core.model.file import load_model
from ternary_core.model.gguf_tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN
from ternary_core.model.tokenizer import HFTokenizer, make_tokenizer
from tests.test_model_files import GGUF_CFG, random_model, write_gguf

PROMPTS = ["Hello world", "ROMEO:", " leading space", "  two leading spaces", "trailing ",
           "ROMEO:\nWhat say you, 1234 or 56?\n\n", "tabs\tand\r\nlines", "café naïve é",
           "日本語 and 日本", "emoji 🙂👍🏽", "mixed 日本 é 🙂 42\n", "x", "!!!???", "a  b   c"]
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def corpus_text():
    """English prose from the repository itself (a clean clone has no corpus beside it):
    the README and the design notes, about 20 KB."""
    root = Path(__file__).resolve().parent.parent
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return "\n".join(t.read_text(encoding="utf-8") for t in texts)[:20000]


def train_byte_level(pre):
    """A byte-level BPE (GPT-2 style, or Llama 3's split regex) of 400 tokens."""
    tok = Tokenizer(models.BPE())
    if pre == "gpt-2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([corpus_text()], trainers.BpeTrainer(
        vocab_size=400, special_tokens=[BOS, EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def train_sentencepiece_style():
    """A Llama-2-style tokenizer.json: BPE with byte fallback over ``<0xNN>`` tokens, spaces
    as ``▁`` with one before the text, <unk> <s> </s> special. The alphabet is kept to the
    corpus's commonest letters, so é, 日本 and emoji need the byte tokens."""
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = meta
    trainer_tok.train_from_iterator([corpus_text()], trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials + byte_tokens, limit_alphabet=60,
        show_progress=False))
    trained = json.loads(trainer_tok.to_str())["model"]
    tok = Tokenizer(models.BPE(vocab=trained["vocab"], merges=[tuple(m) for m in trained["merges"]],
                               unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = meta
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    return tok


@pytest.fixture(scope="module")
def trained():
    return {"gpt-2": train_byte_level("gpt-2"), "llama-bpe": train_byte_level("llama-bpe"),
            "llama": train_sentencepiece_style()}


def id_order(tok):
    return [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]


def merges_of(tok):
    return [" ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]


def gpt2_metadata(tok, pre, add_bos=None):
    """As ``_set_vocab_gpt2`` + ``SpecialVocab(load_merges=True)`` write a byte-level BPE."""
    tokens = id_order(tok)
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [CONTROL if t in (BOS, EOS) else NORMAL for t in tokens],
            "tokenizer.ggml.merges": merges_of(tok),
            "tokenizer.ggml.bos_token_id": tokens.index(BOS),
            "tokenizer.ggml.eos_token_id": tokens.index(EOS)}
    if add_bos is not None:
        meta["tokenizer.ggml.add_bos_token"] = add_bos
    return meta


def llama_metadata(tok, with_merges=False, add_bos=True):
    """As ``_set_vocab_sentencepiece`` writes a SentencePiece BPE: scores rank the pieces
    (a merged piece scores minus its merge's rank, as SentencePiece's BPE does; single
    characters score below every merge), token types mark <unk>, control and byte tokens;
    no merges (``with_merges``: the merges too, as transformers also reads them)."""
    tokens = id_order(tok)
    merges = merges_of(tok)
    rank = {m.replace(" ", ""): i for i, m in enumerate(merges)}
    types = [UNKNOWN if t == "<unk>" else CONTROL if t in ("<s>", "</s>")
             else BYTE if t.startswith("<0x") else NORMAL for t in tokens]
    scores = [float(-rank[t]) if t in rank else -1e6 - i if ty == NORMAL else 0.0
              for i, (t, ty) in enumerate(zip(tokens, types))]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0}
    if add_bos is not None:
        meta["tokenizer.ggml.add_bos_token"] = add_bos
    if with_merges:
        meta["tokenizer.ggml.merges"] = merges
    return meta


def gguf_with(path, metadata, vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    m = random_model(rng, dataclasses.replace(GGUF_CFG, vocab_size=vocab_size))
    for b in m.bitlinears.values():
        b.weight_scale = np.float32(1.0) / np.float32(np.float16(1.0 / b.weight_scale))
    return write_gguf(path, m, metadata=metadata)


def import_tokenizer(tmp_path, capsys, metadata, vocab_size):
    src = gguf_with(tmp_path / "m.gguf", metadata, vocab_size)
    out = tmp_path / "m.safetensors"
    # the tokenizer is what is tested here: no integer decode probe (about a second of float
    # stepping per import; tests/test_model_files.py tests it on a GGUF import)
    assert main(["import", str(src), "-o", str(out), "--probe-positions", "0"]) == 0
    said = capsys.readouterr().err
    model = load_model(out)
    assert model.tokenizer["type"] == "tokenizers"
    tok = make_tokenizer(model.tokenizer, model.config.vocab_size)
    assert isinstance(tok, HFTokenizer)
    return tok, said, src, out


def assert_same_as(tok, original):
    for text in PROMPTS:
        ids = original.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == original.decode(ids), text


CASES = {
    "gpt2, pre gpt-2": ("gpt-2", lambda t: gpt2_metadata(t["gpt-2"], "gpt-2")),
    "gpt2, pre llama-bpe": ("llama-bpe", lambda t: gpt2_metadata(t["llama-bpe"], "llama-bpe")),
    "llama, scores": ("llama", lambda t: llama_metadata(t["llama"])),
    "llama, merges": ("llama", lambda t: llama_metadata(t["llama"], with_merges=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_gguf_tokenizer_encodes_and_decodes_as_the_original(tmp_path, capsys, trained, case):
    which, metadata = CASES[case]
    original = trained[which]
    tok, said, _, _ = import_tokenizer(tmp_path, capsys, metadata(trained),
                                       original.get_vocab_size())
    kind = ("llama (SentencePiece-style BPE" if which == "llama"
            else f"gpt2 (byte-level BPE, pre {which}")
    assert f"tokenizer {kind}" in said, said
    assert_same_as(tok, original)


def test_llama_tokenizer_spells_unknown_characters_with_byte_tokens(tmp_path, capsys, trained):
    original = trained["llama"]
    tok, said, _, _ = import_tokenizer(tmp_path, capsys, llama_metadata(original),
                                       original.get_vocab_size())
    assert "256 byte tokens" in said
    vocab = original.get_vocab()
    for text, raw in [("é", "é".encode()), ("日本", "日本".encode()), ("🙂", "🙂".encode())]:
        ids = tok.encode(text)
        byte_ids = [vocab[f"<0x{b:02X}>"] for b in raw]
        assert ids[-len(byte_ids):] == byte_ids, (text, ids)
        assert tok.decode(ids) == text


@pytest.mark.parametrize("case", CASES)
def test_gguf_tokenizer_matches_transformers_conversion(tmp_path, capsys, trained, case):
    """Same GGUF, transformers' own reader and converter: the same ids and text."""
    ggml = pytest.importorskip("transformers.integrations.gguf.gguf_tokenizer_mapping")
    which, metadata = CASES[case]
    tok, _, src, _ = import_tokenizer(tmp_path, capsys, metadata(trained),
                                      trained[which].get_vocab_size())
    arch, tokenizer_dict, _ = ggml.get_gguf_tokenizer(str(src))
    theirs, _ = ggml.convert_gguf_tokenizer(arch, tokenizer_dict)
    for text in PROMPTS + [f"{BOS}special{EOS} <s>x</s>"]:
        ids = theirs.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == theirs.decode(ids), text


@pytest.mark.parametrize("which, add_bos, expect_bos, said", [
    ("llama", True, True, "BOS '<s>' added (tokenizer.ggml.add_bos_token)"),
    ("llama", False, False, "no BOS added (tokenizer.ggml.add_bos_token)"),
    ("llama", None, True, "BOS '<s>' added (llama.cpp's default"),
    ("gpt-2", None, False, "no BOS added (llama.cpp's default"),
    ("gpt-2", True, True, f"BOS '{BOS}' added (tokenizer.ggml.add_bos_token)"),
    ("llama-bpe", None, True, f"BOS '{BOS}' added (llama.cpp's default"),
    ("llama-bpe", False, False, "no BOS added (tokenizer.ggml.add_bos_token)"),
])
def test_bos_is_prepended_to_a_prompt_when_the_metadata_asks(tmp_path, capsys, trained, which,
                                                            add_bos, expect_bos, said):
    original = trained[which]
    meta = llama_metadata(original, add_bos=add_bos) if which == "llama" else \
        gpt2_metadata(original, which, add_bos=add_bos)
    tok, printed, _, out = import_tokenizer(tmp_path, capsys, meta, original.get_vocab_size())
    assert said in printed, printed
    bos = meta["tokenizer.ggml.bos_token_id"]
    body = original.encode("ROMEO:", add_special_tokens=False).ids
    assert tok.encode("ROMEO:") == body
    assert tok.encode_prompt("ROMEO:") == ([bos] if expect_bos else []) + body
    # the one place a prompt is encoded: ternary generate
    assert main(["generate", "--model", str(out), "--prompt", "ROMEO:", "--tokens", "2",
                 "--temperature", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prompt_ids"] == ([bos] if expect_bos else []) + body
    assert BOS not in result["text"] and "<s>" not in result["text"]


def test_the_shipped_byte_model_prompt_is_unchanged():
    from host.generate import load
    _, tok = load()
    assert tok.encode_prompt("ROMEO: é") == list("ROMEO: é".encode())


def _with_merges(metadata, bad):
    """The file's first (valid) merge, then ``bad``."""
    return {**metadata, "tokenizer.ggml.merges": [metadata["tokenizer.ggml.merges"][0], bad]}


def _without(meta, *keys):
    return {k: v for k, v in meta.items() if k not in keys}


REFUSED = {
    "unknown model": (lambda t: {**llama_metadata(t["llama"]), "tokenizer.ggml.model": "bert"},
                      "GGUF key tokenizer.ggml.model is 'bert'; the tokenizers this engine "
                      "imports are llama, gpt2"),
    "tokens without a model": (lambda t: _without(llama_metadata(t["llama"]),
                                                  "tokenizer.ggml.model"),
                               "GGUF key tokenizer.ggml.model is missing"),
    "short scores": (lambda t: {**llama_metadata(t["llama"]), "tokenizer.ggml.scores": [0.5, 1.5]},
                     "GGUF key tokenizer.ggml.scores has 2 entries for 600 tokens"),
    "short token types": (lambda t: {**gpt2_metadata(t["gpt-2"], "gpt-2"),
                                     "tokenizer.ggml.token_type": [1, 1, 1]},
                          "GGUF key tokenizer.ggml.token_type has 3 entries for 400 tokens"),
    "bad token type": (lambda t: {**gpt2_metadata(t["gpt-2"], "gpt-2"),
                                  "tokenizer.ggml.token_type": [9] * 400},
                       "GGUF key tokenizer.ggml.token_type has type 9"),
    "gpt2 without merges": (lambda t: _without(gpt2_metadata(t["gpt-2"], "gpt-2"),
                                               "tokenizer.ggml.merges"),
                            "GGUF key tokenizer.ggml.merges is missing; a gpt2"),
    "merge of unknown tokens": (lambda t: _with_merges(gpt2_metadata(t["gpt-2"], "gpt-2"), "zz qq"),
                                "GGUF key tokenizer.ggml.merges entry 1 ('zz qq') needs 'zz'"),
    "merge not a pair": (lambda t: {**gpt2_metadata(t["gpt-2"], "gpt-2"),
                                    "tokenizer.ggml.merges": ["Ġth e x"]},
                         "GGUF key tokenizer.ggml.merges entry 0 is 'Ġth e x', not two tokens"),
    "unknown pre": (lambda t: gpt2_metadata(t["gpt-2"], "starcoder"),
                    "GGUF key tokenizer.ggml.pre is 'starcoder'; the pre-tokenizers"),
    "missing pre": (lambda t: _without(gpt2_metadata(t["gpt-2"], "gpt-2"), "tokenizer.ggml.pre"),
                    "GGUF key tokenizer.ggml.pre is missing"),
    "BOS asked, no id": (lambda t: _without(llama_metadata(t["llama"]),
                                            "tokenizer.ggml.bos_token_id"),
                         "GGUF key tokenizer.ggml.bos_token_id is missing, but a BOS is to be "
                         "added (tokenizer.ggml.add_bos_token)"),
    "BOS id out of range": (lambda t: {**llama_metadata(t["llama"]),
                                       "tokenizer.ggml.bos_token_id": 600},
                            "GGUF key tokenizer.ggml.bos_token_id is 600, outside the 600 tokens"),
    "scores that rank nothing": (lambda t: {**llama_metadata(t["llama"]),
                                            "tokenizer.ggml.scores": [-1000.0] * 600},
                                 "GGUF key tokenizer.ggml.scores are all -1000.0, so they give no "
                                 "merge order"),
    "a token twice": (lambda t: {**gpt2_metadata(t["gpt-2"], "gpt-2"),
                                 "tokenizer.ggml.tokens": ["a"] * 400},
                      "GGUF key tokenizer.ggml.tokens has 'a' twice (ids 0 and 1)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_tokenizer_metadata_it_cannot_reproduce_is_refused_by_key(tmp_path, capsys, trained, case):
    metadata, message = REFUSED[case]
    meta = metadata(trained)
    src = gguf_with(tmp_path / "m.gguf", meta, len(meta["tokenizer.ggml.tokens"]))
    out = tmp_path / "o.safetensors"
    assert main(["import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()


def test_tokens_that_do_not_match_the_embedding_are_refused(tmp_path, capsys, trained):
    meta = gpt2_metadata(trained["gpt-2"], "gpt-2")
    src = gguf_with(tmp_path / "m.gguf", meta, 512)
    assert main(["import", str(src), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert ("GGUF key tokenizer.ggml.tokens has 400 tokens, but token_embd.weight has 512 rows"
            in capsys.readouterr().err)


# -- metadata of the wrong types, over a small hand-made llama vocabulary (no training)

SMALL = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "a", "▁a"]
STR, I32, F32 = GGUFValueType.STRING, GGUFValueType.INT32, GGUFValueType.FLOAT32


def small_llama(**keys):
    """The metadata of :data:`SMALL` as ``_set_vocab_sentencepiece`` writes it, with
    ``tokenizer.ggml.<key>`` replaced by ``keys`` (None: left out)."""
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": SMALL,
            "tokenizer.ggml.scores": [0.0] * 259 + [-3.0, -2.0, -1.0],
            "tokenizer.ggml.token_type": [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * 3,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    for k, v in keys.items():
        meta["tokenizer.ggml." + k] = v
    return {k: v for k, v in meta.items() if v is not None}


def _swap(i, token):
    return SMALL[:i] + [token] + SMALL[i + 1:]


WRONG_TYPES = {
    "tokens as ints": (small_llama(tokens=list(range(262))), "tokens must be a list of strings"),
    "tokens as one string": (small_llama(tokens="abc"), "tokens must be an array, got 'abc'"),
    "tokens as arrays": (small_llama(tokens=([[1, 2]] * 262, GGUFValueType.ARRAY,
                                             GGUFValueType.ARRAY)), "tokens is an array of arrays"),
    "a token not UTF-8": (small_llama(tokens=([t.encode() for t in SMALL[:-1]] + [b"\xff\xfe"],
                                              GGUFValueType.ARRAY, STR)),
                          r"tokens (entry 261) is not UTF-8"),
    "merges as ints": (small_llama(merges=[1, 2]), "merges entry 0 is '1', not two tokens"),
    "merges of empty strings": (small_llama(merges=["", " "]), "merges entry 0 is '', not two"),
    "scores NaN": (small_llama(scores=[float("nan")] * 262), "scores must be a list of finite"),
    "scores inf": (small_llama(scores=[0.0] * 261 + [float("inf")]),
                   "scores must be a list of finite"),
    "scores strings": (small_llama(scores=["x"] * 262), "scores must be a list of finite numbers"),
    "token types strings": (small_llama(token_type=["1"] * 262),
                            "token_type must be a list of integers"),
    "token types floats": (small_llama(token_type=[1.0] * 262),
                           "token_type must be a list of integers"),
    "token type -1": (small_llama(token_type=([-1] * 262, GGUFValueType.ARRAY, I32)),
                      "token_type has type -1; token types are 0..6"),
    "bos -1": (small_llama(bos_token_id=(-1, I32)), "bos_token_id is -1, outside the 262 tokens"),
    "bos 2**63": (small_llama(bos_token_id=(2 ** 63, GGUFValueType.UINT64)),
                  "bos_token_id is 9223372036854775808, outside the 262 tokens"),
    "bos a float": (small_llama(bos_token_id=(1.0, F32)),
                    "bos_token_id must be an integer, got '1.0'"),
    "bos a string": (small_llama(bos_token_id="1"), "bos_token_id must be an integer, got '1'"),
    "bos a bool": (small_llama(bos_token_id=True), "bos_token_id must be an integer, got 'True'"),
    "eos -5": (small_llama(eos_token_id=(-5, I32)), "eos_token_id is -5, outside the 262 tokens"),
    "unknown -5": (small_llama(unknown_token_id=(-5, I32)), "unknown_token_id is -5, outside"),
    "pre an int": (small_llama(pre=5), "pre must be a string, got '5'"),
    "pre an array": (small_llama(pre=["llama3"]), "pre must be a string, got \"['llama3']\""),
    "pre not UTF-8": (small_llama(pre=(b"\xff", STR)), "pre is not UTF-8"),
    "add_bos_token an int": (small_llama(add_bos_token=1), "add_bos_token must be true or false"),
    "add_bos_token a string": (small_llama(add_bos_token="true"),
                               "add_bos_token must be true or false"),
    "add_space_prefix an int": (small_llama(add_space_prefix=1),
                                "add_space_prefix must be true or"),
    "model an array": (small_llama(model=["llama"]), "model must be a string"),
    "100,262 tokens for 262 rows": (small_llama(tokens=SMALL + [f"x{i}" for i in range(100_000)]),
                                    "tokens has 100262 tokens, but token_embd.weight has 262 rows"),
    # byte tokens llama.cpp would read as a wrong byte (strtol of the name) and transformers
    # never uses: imported before, as a tokenizer that spells byte 0 '<unk>'
    "byte token <0xZZ>": (small_llama(tokens=_swap(3, "<0xZZ>")),
                          "tokens entry 3 is '<0xZZ>', typed BYTE (6) in tokenizer.ggml.token_type "
                          "but not spelled <0xNN>"),
    "byte token <0x0a>": (small_llama(tokens=_swap(13, "<0x0a>")), "tokens entry 13 is '<0x0a>'"),
    "a word typed BYTE": (small_llama(token_type=[UNKNOWN, CONTROL, CONTROL] + [BYTE] * 257
                                      + [NORMAL] * 2), "tokens entry 259 is '▁', typed BYTE"),
}


@pytest.mark.parametrize("case", WRONG_TYPES)
def test_tokenizer_metadata_of_the_wrong_type_is_refused_by_key(tmp_path, capsys, case):
    meta, message = WRONG_TYPES[case]
    src = gguf_with(tmp_path / "m.gguf", meta, len(SMALL))
    out = tmp_path / "o.safetensors"
    assert main(["import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"GGUF key tokenizer.ggml.{message}" in err, err
    assert not out.exists()


@pytest.mark.parametrize("meta, said", [
    (small_llama(), "262 tokens, 2 special, BOS '<s>' added"),
    # one token both BOS and EOS (GPT-2's <|endoftext|>): one special token, BOS and EOS
    (small_llama(bos_token_id=2, eos_token_id=2), "2 special, BOS '</s>' added"),
    # control characters in a token reach the tokenizer as they are (a model may emit them
    # anyway, through its byte tokens); printed names are repr()s
    (small_llama(tokens=_swap(260, "\x1b[31m")), "262 tokens"),
], ids=["small", "bos is eos", "escape in a token"])
def test_odd_but_valid_small_vocabularies_import(tmp_path, capsys, meta, said):
    src = gguf_with(tmp_path / "m.gguf", meta, len(SMALL))
    out = tmp_path / "o.safetensors"
    assert main(["import", str(src), "-o", str(out), "--probe-positions", "0"]) == 0
    assert said in capsys.readouterr().err
    model = load_model(out)
    tok = make_tokenizer(model.tokenizer, model.config.vocab_size)
    assert tok.decode(tok.encode("a é")) == "a é"


def test_an_empty_token_list_is_refused_as_empty():
    """gguf's writer refuses empty arrays, so this is a hand-made file's; the reader gives []."""
    from ternary_core.errors import TernaryError
    from ternary_core.model.gguf_tokenizer import tokenizer_from_gguf

    with pytest.raises(TernaryError, match=r"^m\.gguf: GGUF key tokenizer\.ggml\.tokens is empty$"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": []}, 262,
                            "m.gguf")
