"""Tokenizers described by JSON in the model file.

``{"type": "bytes"}``             one token per UTF-8 byte (vocab 256): the shipped model.
``{"type": "tokenizers", "json": ...}``  a Hugging Face ``tokenizer.json`` (``tokenizers`` package).
``{"type": "vocab", "tokens": [...]}``  a plain id -> string list (model files of older
                                   GGUF imports); greedy-matches on encode. GGUF imports now
                                   make a ``tokenizers`` one (:mod:`.gguf_tokenizer`).
``{"type": "none"}``              no tokenizer (an HF folder without tokenizer files): the model
                                   takes and gives token ids only.

``encode`` turns text into ids as they are; ``encode_prompt`` is what a prompt is encoded
with: it also adds what the tokenizer adds to a sequence (a ``tokenizers`` post-processor,
e.g. the BOS a GGUF's ``tokenizer.ggml.add_bos_token`` asks for).

Streaming text out of a token stream goes through :class:`TextStream`, which never
splits a character that spans tokens.
"""

import codecs
from pathlib import Path

from ..errors import TernaryError


class ByteTokenizer:
    vocab_size = 256
    has_text = True

    def encode(self, text):
        return list(text.encode("utf-8"))

    encode_prompt = encode

    def token_bytes(self, ids):
        """The exact bytes ``ids`` stand for (a byte tokenizer knows them token by token)."""
        return bytes(int(i) & 0xFF for i in ids)

    def decode(self, ids):
        return self.token_bytes(ids).decode("utf-8", errors="replace")


class HFTokenizer:
    has_text = True

    def __init__(self, json_text):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TernaryError("tokenizer: this model's tokenizer needs the 'tokenizers' "
                               "package (pip install tokenizers)") from None
        if not isinstance(json_text, str):
            raise TernaryError(f"tokenizer: 'json' must be the text of a tokenizer.json, got "
                               f"{type(json_text).__name__}")
        try:
            self._tok = Tokenizer.from_str(json_text)
        except Exception as exc:  # the tokenizers package raises its own exception types
            raise TernaryError(f"tokenizer: not a valid tokenizer.json ({exc})") from None
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text):
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_prompt(self, text):
        """``text``'s ids with the special tokens the tokenizer adds to a sequence (its
        post-processor: a BOS, for most causal LMs)."""
        return self._tok.encode(text, add_special_tokens=True).ids

    def decode(self, ids):
        return self._tok.decode(list(ids))


class VocabTokenizer:
    has_text = True

    def __init__(self, tokens):
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            bad = tokens if not isinstance(tokens, list) else \
                next(t for t in tokens if not isinstance(t, str))
            raise TernaryError(f"tokenizer: 'tokens' must be a list of strings, found "
                               f"{str(bad)[:40]!r} ({type(bad).__name__})")
        self.tokens = list(tokens)
        self.vocab_size = len(self.tokens)
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._longest = max((len(t) for t in self.tokens), default=1)

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            for n in range(min(self._longest, len(text) - i), 0, -1):
                if text[i:i + n] in self._index:
                    ids.append(self._index[text[i:i + n]])
                    i += n
                    break
            else:
                raise TernaryError(f"tokenizer: cannot encode {text[i]!r} with this vocabulary")
        return ids

    encode_prompt = encode

    def decode(self, ids):
        return "".join(self.tokens[i] for i in ids)


class NoTokenizer:
    """A model without a tokenizer: ids in, ids out. ``encode`` is an error; ``decode``
    spells the ids out (space-separated), which is what text output then shows."""

    has_text = False
    vocab_size = None

    def encode(self, text):
        raise TernaryError("this model has no tokenizer (its model file says tokenizer 'none'): "
                           "give token ids instead of text")

    encode_prompt = encode

    def decode(self, ids):
        return " ".join(str(int(i)) for i in ids)


class TextStream:
    """Turns token ids, fed one at a time, into text as soon as it is whole.

    A character may span tokens (a byte tokenizer emits one UTF-8 byte per token), so
    the bytes go through an incremental UTF-8 decoder that holds back an unfinished
    character until its last byte arrives; :meth:`finish` flushes what is left (an
    unfinished character becomes U+FFFD, as ``decode`` does). Tokenizers that do not
    know their tokens' bytes (HF ``tokenizers``) are decoded as a whole and the new
    tail emitted, holding back a trailing U+FFFD that the next token may complete.
    Tokenizer-less models stream their ids, space-separated.
    """

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") \
            if hasattr(tokenizer, "token_bytes") else None
        self._ids, self._emitted = [], 0

    def feed(self, ids):
        """Feed token ids; return the text that is now complete (maybe '')."""
        ids = [int(i) for i in ids]
        if not ids:
            return ""
        if not self.tok.has_text:
            out = ("" if not self._ids else " ") + self.tok.decode(ids)
            self._ids.extend(ids)
            return out
        if self._utf8:
            return self._utf8.decode(self.tok.token_bytes(ids))
        self._ids.extend(ids)
        text = self.tok.decode(self._ids)
        end = len(text.rstrip("\ufffd"))
        out, self._emitted = text[self._emitted:end], max(self._emitted, end)
        return out

    def finish(self):
        """The text still held back (an unfinished character at the end)."""
        if not self.tok.has_text:
            return ""
        if self._utf8:
            return self._utf8.decode(b"", final=True)
        text = self.tok.decode(self._ids)
        out, self._emitted = text[self._emitted:], len(text)
        return out


def parse_token_ids(text, source):
    """Token ids written as integers separated by commas and/or whitespace; ``source``
    (an argument or file name) is named in the error."""
    parts = [p for p in text.replace(",", " ").split()]
    if not parts:
        raise TernaryError(f"{source}: no token ids given")
    try:
        return [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("+-").isdigit())
        raise TernaryError(f"{source}: token ids must be integers separated by commas or "
                           f"spaces, got {bad[:20]!r}") from None


def make_tokenizer(desc, vocab_size=None):
    """The tokenizer ``desc`` describes; with ``vocab_size`` (the model's), also check that
    every id the model can produce has text (a shorter vocabulary would fail mid-output)."""
    tok = _make_tokenizer(desc)
    if vocab_size is not None and isinstance(tok, (ByteTokenizer, VocabTokenizer)) \
            and tok.vocab_size < vocab_size:
        raise TernaryError(f"tokenizer: {tok.vocab_size} tokens, but the model's vocabulary is "
                           f"{vocab_size}: ids {tok.vocab_size}..{vocab_size - 1} have no text")
    return tok


def _make_tokenizer(desc):
    kind = desc.get("type") if isinstance(desc, dict) else None
    if kind == "none":
        return NoTokenizer()
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "tokenizers":
        return HFTokenizer(desc.get("json", ""))
    if kind == "vocab":
        return VocabTokenizer(desc.get("tokens", []))
    raise TernaryError(f"tokenizer: unknown description {kind!r} (expected bytes, tokenizers, "
                       "vocab or none)")


def read_token_ids(path):
    """Token ids from a file of integers separated by whitespace and/or commas."""
    p = Path(path)
    if not p.is_file():
        raise TernaryError(f"--ids: {path} is not a file")
    try:
        text = p.read_text("utf-8")
    except UnicodeDecodeError:
        raise TernaryError(f"--ids: {path} is not a text file of token ids") from None
    return parse_token_ids(text, f"--ids {path}")
