"""Tokenizers described by JSON in the model file.

``{"type": "bytes"}``             one token per UTF-8 byte (vocab 256): the shipped model.
``{"type": "tokenizers", "json": ...}``  a Hugging Face ``tokenizer.json`` (``tokenizers`` package).
``{"type": "vocab", "tokens": [...]}``  a plain id -> string list (e.g. from GGUF); decode only
                                   greedy-matches on encode.
"""

from .errors import TernaryError


class ByteTokenizer:
    vocab_size = 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(int(i) & 0xFF for i in ids).decode("utf-8", errors="replace")


class HFTokenizer:
    def __init__(self, json_text):
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_str(json_text)
        except Exception as exc:  # the tokenizers package raises its own exception types
            raise TernaryError(f"tokenizer: not a valid tokenizer.json ({exc})") from None
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text):
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self._tok.decode(list(ids))


class VocabTokenizer:
    def __init__(self, tokens):
        self.tokens = [str(t) for t in tokens]
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

    def decode(self, ids):
        return "".join(self.tokens[i] for i in ids)


def make_tokenizer(desc):
    kind = desc.get("type") if isinstance(desc, dict) else None
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "tokenizers":
        return HFTokenizer(desc.get("json", ""))
    if kind == "vocab":
        return VocabTokenizer(desc.get("tokens", []))
    raise TernaryError(f"tokenizer: unknown description {kind!r} (expected bytes, tokenizers or vocab)")
