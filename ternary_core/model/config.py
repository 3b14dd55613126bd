"""The BitNet model configuration (the fields of HF's ``BitNetConfig`` we use) and the
shapes of a model's BitLinear layers."""

import math
from dataclasses import asdict, dataclass, fields

from ..errors import TernaryError
from . import names

# A sanity bound on every integer field: 8x the largest real BitNet's (vocab 128,256 of
# BitNet b1.58 2B4T); a larger value is a corrupt or hostile file, not a model.
MAX_CONFIG_INT = 1 << 20

# The GLU activations a model may use (HF ``hidden_act``): squared ReLU, as BitNet b1.58
# 2B4T, and SiLU, as the LLaMA-shaped BitNets (1bitLLM bitnet_b1_58-*, TriLM).
ACTIVATIONS = ("relu2", "silu")


@dataclass(frozen=True)
class BitNetConfig:
    vocab_size: int = 256
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "relu2"
    tie_word_embeddings: bool = False

    def __post_init__(self):
        # Model files and config.json are untrusted: check every field's type and domain
        # here, so a bad value is named on load instead of surfacing as NaN logits.
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise TernaryError(f"config: {f.name} must be a positive integer, got {v!r}")
                if v > MAX_CONFIG_INT:
                    raise TernaryError(f"config: {f.name} must be at most {MAX_CONFIG_INT}, got {v!r}")
            elif f.type in ("float", float):
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise TernaryError(f"config: {f.name} must be a number, got {v!r}")
                if not (math.isfinite(v) and v > 0):
                    raise TernaryError(f"config: {f.name} must be finite and greater than 0, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            elif f.type in ("bool", bool) and not isinstance(v, bool):
                raise TernaryError(f"config: {f.name} must be true or false, got {v!r}")
            elif f.type in ("str", str) and not isinstance(v, str):
                raise TernaryError(f"config: {f.name} must be a string, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise TernaryError("config: hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise TernaryError("config: num_attention_heads must be a multiple of num_key_value_heads")
        if self.hidden_act not in ACTIVATIONS:
            raise TernaryError(f"config: hidden_act must be one of {', '.join(ACTIVATIONS)}, "
                               f"got {self.hidden_act!r}")
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise TernaryError("config: head_dim must be even (RoPE rotates pairs)")

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def bitlinear_shapes(self):
        """``{name: (out, in)}`` for every BitLinear of the model, in execution order."""
        d, f, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        per = dict(zip(names.BITLINEARS, [(d, d), (kv, d), (kv, d), (d, d), (f, d), (f, d), (d, f)]))
        return {names.layer(i) + n: per[n] for i in range(self.num_hidden_layers)
                for n in names.BITLINEARS}

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d, *, source="config"):
        if not isinstance(d, dict):
            raise TernaryError(f"{source}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "rope_theta" not in d and isinstance(d.get("rope_parameters"), dict):
            kwargs["rope_theta"] = d["rope_parameters"].get("rope_theta", cls.rope_theta)
        try:
            return cls(**kwargs)
        except TernaryError as exc:  # "config: field ..." -> "<file>: config: field ..."
            raise TernaryError(f"{source}: {str(exc).removeprefix('config: ')}") from None
