"""Text generation with a BitNet model on a matvec backend, with timing statistics."""

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ternary_core.errors import TernaryError
from ternary_core.model_file import load_model
from ternary_core.reference import BitNetRunner
from ternary_core.sampling import Sampler
from ternary_core.tokenizer import make_tokenizer

DEFAULT_MODEL = "shakespeare-bitnet.safetensors"


def default_model_path():
    return Path(str(resources.files("ternary_core") / "models" / DEFAULT_MODEL))


@dataclass
class GenerationResult:
    prompt_ids: list
    token_ids: list
    text: str
    seconds: float
    prefill_seconds: float
    stats: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self):
        decode = self.seconds - self.prefill_seconds
        return len(self.token_ids) / decode if decode > 0 else float("inf")


def generate(model, backend, prompt_ids, n_tokens, sampler, on_token=None):
    """Feed ``prompt_ids``, then sample ``n_tokens``; call ``on_token(id)`` as each arrives."""
    if not prompt_ids:
        raise TernaryError("the prompt is empty: give --prompt text or --prompt-ids")
    limit = model.config.max_position_embeddings
    if len(prompt_ids) + n_tokens > limit:
        raise TernaryError(f"prompt ({len(prompt_ids)}) + tokens ({n_tokens}) exceed the model's "
                           f"context of {limit}")
    for t in prompt_ids:
        if not 0 <= t < model.config.vocab_size:
            raise TernaryError(f"prompt token id {t} is outside the vocabulary (0..{model.config.vocab_size - 1})")
    t0 = time.perf_counter()
    runner = BitNetRunner(model, backend, max_len=len(prompt_ids) + n_tokens)
    for t in prompt_ids[:-1]:
        runner.step(t)
    logits = runner.step(prompt_ids[-1])
    t_prefill = time.perf_counter() - t0
    out = []
    for _ in range(n_tokens):
        nxt = sampler(logits)
        out.append(nxt)
        if on_token:
            on_token(nxt)
        if len(out) < n_tokens:
            logits = runner.step(nxt)
    return GenerationResult(list(prompt_ids), out, "", time.perf_counter() - t0, t_prefill)


def load(path=None):
    path = Path(path) if path else default_model_path()
    model = load_model(path)
    return model, make_tokenizer(model.tokenizer)


__all__ = ["GenerationResult", "Sampler", "default_model_path", "generate", "load"]
