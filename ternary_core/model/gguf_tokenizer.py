"""A GGUF's ``tokenizer.ggml.*`` metadata as a real tokenizer (a ``tokenizers`` Tokenizer).

A GGUF carries no ``tokenizer.json``: llama.cpp's converter writes the vocabulary, scores,
token types, merges and special token ids as metadata. This module builds from them the
``tokenizers`` pipeline that transformers' GGUF tokenizer conversion builds
(``transformers.integrations.gguf``: ``LlamaTokenizer`` for ``llama``, ``GPT2Tokenizer`` for
``gpt2``, plus the ``tokenizer.ggml.pre`` split regex). It is built here, with the
``tokenizers`` package only, because transformers is an optional extra of this project;
``tests/test_gguf_tokenizer.py`` checks it against transformers' converter. The result is
stored in the model file as ``{"type": "tokenizers", "json": ...}``.

``llama``  SentencePiece-style: BPE with byte fallback (``<0xNN>`` tokens), spaces as ``▁``
           and a ``▁`` before the text (``tokenizer.ggml.add_space_prefix``, default true).
           The merges are ``tokenizer.ggml.merges`` when the file has them, else they come
           from ``tokenizer.ggml.scores`` (a token's score ranks every split of it into two
           tokens, which is llama.cpp's SentencePiece merge rule).
``gpt2``   byte-level BPE: ``tokenizer.ggml.merges`` required, text split by the regex
           ``tokenizer.ggml.pre`` names.

Where llama.cpp and transformers differ, this follows transformers (the reference the tests
compare with) except where llama.cpp's rule is what the metadata says: BOS is added to a
prompt when ``tokenizer.ggml.add_bos_token`` says so, and when the key is absent as
llama.cpp does it (``llama`` vocabularies, and ``gpt2`` ones with a Llama-3 pre-tokenizer).
The BOS (and EOS, with ``add_eos_token``) goes into the tokenizer's post-processor, which
``HFTokenizer.encode_prompt`` applies. Anything this cannot reproduce is refused, naming
the key: an unknown model kind or pre-tokenizer, lists of different lengths, a token twice,
merges of tokens that are not in the vocabulary, special ids out of range, a llama
byte token (type BYTE) not spelled ``<0xNN>``, a metadata value of the wrong type.
"""

import math
import re

import numpy as np

from ..errors import TernaryError

# tokenizer.ggml.token_type values (gguf.TokenType / llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")

# The split regexes of the pre-tokenizers supported, as llama.cpp (llama-vocab.cpp) and
# transformers (integrations/gguf) both spell them; "gpt-2" is the ByteLevel default regex.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PRE = ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
              "lfm2")
PRE_SPLITS = {"gpt-2": None, **{p: _LLAMA3_SPLIT for p in LLAMA3_PRE},
              "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
MODELS = ("llama", "gpt2")


def read_tokenizer_metadata(reader, path):
    """The ``tokenizer.*`` keys of a ``gguf.GGUFReader`` as Python values (arrays as lists,
    strings as str); a string that is not UTF-8 is refused by key."""
    from gguf import GGUFValueType

    meta = {}
    for key, f in reader.fields.items():
        if not key.startswith("tokenizer.") or not f.types:
            continue
        if f.types[0] == GGUFValueType.ARRAY:
            item = f.types[1] if len(f.types) > 1 else None
            if item == GGUFValueType.STRING:
                meta[key] = [_utf8(path, key, bytes(f.parts[i]), n) for n, i in enumerate(f.data)]
            elif item is None or not f.data:
                meta[key] = []
            elif item == GGUFValueType.ARRAY:
                raise TernaryError(f"{path}: GGUF key {key} is an array of arrays")
            else:
                meta[key] = np.concatenate([np.asarray(f.parts[i]).reshape(-1)
                                            for i in f.data]).tolist()
        elif f.types[0] == GGUFValueType.STRING:
            meta[key] = _utf8(path, key, bytes(f.parts[f.data[0]]))
        else:
            meta[key] = np.asarray(f.parts[f.data[0]]).reshape(-1)[0].item()
    return meta


def _utf8(path, key, raw, index=None):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = f" (entry {index})" if index is not None else ""
        raise TernaryError(f"{path}: GGUF key {key}{at} is not UTF-8 ({exc})") from None


def tokenizer_from_gguf(meta, vocab_size, path):
    """``(description, summary)``: the model-file tokenizer description of the GGUF
    metadata ``meta`` (from :func:`read_tokenizer_metadata`) for a model of ``vocab_size``
    tokens, and a one-line account of what was read (for ``ternary import``)."""
    return _Reader(meta, vocab_size, path).build()


class _Reader:
    def __init__(self, meta, vocab_size, path):
        self.meta, self.vocab_size, self.path = meta, vocab_size, path

    def fail(self, key, what):
        raise TernaryError(f"{self.path}: GGUF key tokenizer.ggml.{key} {what}")

    def get(self, key, kind, default=None):
        v = self.meta.get("tokenizer.ggml." + key, default)
        if v is None or kind is None:
            return v
        ok, what = {"str": (lambda x: isinstance(x, str), "a string"),
                    "bool": (lambda x: isinstance(x, bool), "true or false"),
                    "int": (lambda x: isinstance(x, int) and not isinstance(x, bool),
                            "an integer"),
                    "list": (lambda x: isinstance(x, list), "an array")}[kind]
        if not ok(v):
            self.fail(key, f"must be {what}, got {str(v)[:40]!r}")
        return v

    def build(self):
        model = self.get("model", "str")
        tokens = self.get("tokens", "list")
        if model is None and tokens is None:  # no tokenizer in the file
            return ({"type": "bytes"}, "bytes") if self.vocab_size == 256 else \
                ({"type": "none"}, "none")
        if model is None:
            self.fail("model", "is missing, so the file's tokens have no tokenization rule "
                               "(expected 'llama' or 'gpt2')")
        if model in ("no", "none"):
            return {"type": "none"}, "none"
        if model not in MODELS:
            self.fail("model", f"is {model!r}; the tokenizers this engine imports are "
                               f"{', '.join(MODELS)}")
        if tokens is None:
            self.fail("tokens", "is missing")
        if not tokens:
            self.fail("tokens", "is empty")
        if not all(isinstance(t, str) for t in tokens):
            self.fail("tokens", "must be a list of strings")
        if len(tokens) != self.vocab_size:
            self.fail("tokens", f"has {len(tokens)} tokens, but token_embd.weight has "
                                f"{self.vocab_size} rows")
        ids = {}
        for i, t in enumerate(tokens):
            if ids.setdefault(t, i) != i:
                self.fail("tokens", f"has {t[:40]!r} twice (ids {ids[t]} and {i})")
        self.tokens, self.ids = tokens, ids
        self.types = self.numbers("token_type", int, default=[NORMAL] * len(tokens))
        bad = next((t for t in self.types if not 0 <= t <= BYTE), None)
        if bad is not None:
            self.fail("token_type", f"has type {bad}; token types are 0..{BYTE}")
        if model == "llama":
            # a byte token stands for the byte its name spells, as SentencePiece writes it
            # (<0x0A>); llama.cpp reads any other name as a wrong byte, transformers never
            # uses it
            i = next((i for i, (t, ty) in enumerate(zip(tokens, self.types))
                      if ty == BYTE and not BYTE_TOKEN.fullmatch(t)), None)
            if i is not None:
                self.fail("tokens", f"entry {i} is {tokens[i][:40]!r}, typed BYTE ({BYTE}) in "
                                    "tokenizer.ggml.token_type but not spelled <0xNN> (two "
                                    "uppercase hex digits)")
        self.scores = self.numbers("scores", float)
        self.specials = {name: self.special_id(name) for name in ("bos", "eos", "unknown")}
        self.pre = self.get("pre", "str")
        tok, what = self.llama() if model == "llama" else self.gpt2()
        added = self.add_special_tokens(tok, byte_level=model == "gpt2")
        bos_note = self.post_processor(tok, model)
        summary = (f"{model} ({what}, {len(tokens)} tokens"
                   + (f", {added} special" if added else "") + f", {bos_note})")
        return {"type": "tokenizers", "json": tok.to_str()}, summary

    def numbers(self, key, kind, default=None):
        v = self.get(key, "list")
        if v is None:
            return default
        if len(v) != len(self.tokens):
            self.fail(key, f"has {len(v)} entries for {len(self.tokens)} tokens "
                           f"(tokenizer.ggml.tokens)")
        if kind is int and not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            self.fail(key, "must be a list of integers")
        if kind is float and not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                     and math.isfinite(x) for x in v):
            self.fail(key, "must be a list of finite numbers")
        return v

    def special_id(self, name):
        key = f"{name}_token_id"
        v = self.get(key, "int")
        if v is not None and not 0 <= v < len(self.tokens):
            self.fail(key, f"is {v}, outside the {len(self.tokens)} tokens")
        return v

    def merges(self, required):
        merges = self.get("merges", "list")
        if merges is None:
            if required:
                self.fail("merges", "is missing; a gpt2 (byte-level BPE) tokenizer needs its "
                                    "merges")
            return None
        pairs = []
        for n, m in enumerate(merges):
            parts = m.split(" ") if isinstance(m, str) else []
            if len(parts) != 2 or not all(parts):
                self.fail("merges", f"entry {n} is {str(m)[:40]!r}, not two tokens separated "
                                    "by one space")
            missing = next((p for p in (*parts, parts[0] + parts[1]) if p not in self.ids), None)
            if missing is not None:
                self.fail("merges", f"entry {n} ({m[:40]!r}) needs {missing[:40]!r}, which is "
                                    "not in tokenizer.ggml.tokens")
            pairs.append(tuple(parts))
        return pairs

    def llama(self):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        merges, source = self.merges(required=False), "merges"
        if merges is None:
            if self.scores is None:
                self.fail("scores", "is missing, and so is tokenizer.ggml.merges: a llama "
                                    "tokenizer needs one of them")
            if len(set(self.scores)) == 1 and len(self.tokens) > 1:
                self.fail("scores", f"are all {self.scores[0]}, so they give no merge order, "
                                    "and the file has no tokenizer.ggml.merges")
            merges, source = merges_from_scores(self.tokens, self.scores), "merges from scores"
        prefix = self.get("add_space_prefix", "bool", True)
        unk = self.specials["unknown"]
        if unk is None:
            unk = next((i for i, t in enumerate(self.types) if t == UNKNOWN), None)
        tok = Tokenizer(models.BPE(vocab=self.ids, merges=merges, fuse_unk=True, byte_fallback=True,
                                   unk_token=None if unk is None else self.tokens[unk]))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="\u2581", prepend_scheme="first" if prefix else "never", split=False)
        steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        if prefix:
            steps.append(decoders.Strip(content=" ", left=1, right=0))
        tok.decoder = decoders.Sequence(steps)
        nbytes = sum(t == BYTE for t in self.types)
        return tok, (f"SentencePiece-style BPE, {len(merges)} {source}, {nbytes} byte tokens"
                     + ("" if prefix else ", no space prefix"))

    def gpt2(self):
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        if self.pre is None:
            self.fail("pre", "is missing: llama.cpp then splits the text with its 'default' "
                             "regex, which this importer does not reproduce")
        if self.pre not in PRE_SPLITS:
            self.fail("pre", f"is {self.pre!r}; the pre-tokenizers this engine imports are "
                             f"{', '.join(PRE_SPLITS)}")
        merges = self.merges(required=True)
        # A byte-level vocabulary spells every byte as one printable character; a token
        # written in other characters (an added token) is respelled in that alphabet, as
        # transformers does, so the vocabulary and the byte-level pre-tokenizer agree.
        alphabet = byte_alphabet()
        letters = set(alphabet.values())
        vocab = {t if set(t) <= letters else "".join(alphabet[b] for b in t.encode("utf-8")): i
                 for t, i in self.ids.items()}
        if len(vocab) != len(self.ids):
            self.fail("tokens", "has two tokens that are the same bytes")
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                   continuing_subword_prefix="", end_of_word_suffix="",
                                   fuse_unk=False, ignore_merges=self.pre in LLAMA3_PRE))
        split = PRE_SPLITS[self.pre]
        if split is None:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        return tok, f"byte-level BPE, pre {self.pre}, {len(merges)} merges"

    def add_special_tokens(self, tok, byte_level):
        """CONTROL tokens (and BOS/EOS) become special added tokens (kept whole, left out of
        decoded text), USER_DEFINED ones plain added tokens (kept whole), as in transformers."""
        from tokenizers import AddedToken

        letters = set(byte_alphabet().values()) if byte_level else None
        ends = {self.specials["bos"], self.specials["eos"]} - {None}
        control = [AddedToken(t, normalized=False, special=True)
                   for i, (t, ty) in enumerate(zip(self.tokens, self.types))
                   if (ty == CONTROL or i in ends) and (letters is None or set(t) <= letters)]
        vocab = tok.get_vocab()
        user = [AddedToken(t, normalized=False, special=False)
                for t, ty in zip(self.tokens, self.types) if ty == USER_DEFINED and t in vocab]
        tok.add_special_tokens(control)
        tok.add_tokens(user)
        if tok.get_vocab_size() != len(self.tokens):
            self.fail("token_type", f"marks tokens the vocabulary cannot hold whole "
                                    f"({tok.get_vocab_size()} tokens after adding them, not "
                                    f"{len(self.tokens)})")
        return len(control) + len(user)

    def post_processor(self, tok, model):
        """Put BOS/EOS into the tokenizer's post-processor as the metadata asks."""
        from tokenizers import processors

        add_bos = self.get("add_bos_token", "bool")
        source = "tokenizer.ggml.add_bos_token"
        if add_bos is None:   # llama.cpp's defaults when the key is absent
            add_bos = model == "llama" or self.pre in LLAMA3_PRE
            source = "llama.cpp's default for this tokenizer"
        add_eos = self.get("add_eos_token", "bool", False)
        ends = {}
        for name, add in (("bos", add_bos), ("eos", add_eos)):
            if add:
                if self.specials[name] is None:
                    why = source if name == "bos" else "tokenizer.ggml.add_eos_token"
                    self.fail(f"{name}_token_id", f"is missing, but a {name.upper()} is to be "
                                                  f"added ({why})")
                ends[name] = (tok.id_to_token(self.specials[name]), self.specials[name])
        single = [ends[n][0] for n in ("bos",) if n in ends] + ["$A"] + \
            [ends[n][0] for n in ("eos",) if n in ends]
        tok.post_processor = processors.TemplateProcessing(single=single,
                                                            special_tokens=list(ends.values()))
        if add_bos:
            return f"BOS {tok.id_to_token(self.specials['bos'])!r} added ({source})"
        return f"no BOS added ({source})"


def merges_from_scores(tokens, scores):
    """BPE merges that act like llama.cpp's SentencePiece tokenizer: every split of a token
    into two tokens of the vocabulary is a merge, ranked by the token's score (highest
    first), as transformers' ``generate_merges`` ranks them."""
    ids = {t: i for i, t in enumerate(tokens)}
    found = []
    for t, s in zip(tokens, scores):
        local = [(t[:k], t[k:], s) for k in range(1, len(t)) if t[:k] in ids and t[k:] in ids]
        local.sort(key=lambda m: (ids[m[0]], ids[m[1]]))
        found.extend(local)
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(a, b) for a, b, _ in found]


def byte_alphabet():
    """GPT-2's printable spelling of the 256 bytes (``bytes_to_unicode``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    spelling, extra = {}, 0
    for b in range(256):
        if b in keep:
            spelling[b] = chr(b)
        else:
            spelling[b] = chr(256 + extra)
            extra += 1
    return spelling

