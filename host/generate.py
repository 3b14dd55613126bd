"""Text generation with a BitNet model, on any runner, past the model's context.

A *runner* feeds one token at a time and returns the logits for the next one
(``reset()``, ``step(token)``, ``pos``). Two kinds plug in the same way, through a
*runner factory* ``make(max_len) -> runner``:

- :func:`float_runner`: the numpy float BitNet (:class:`~ternary_core.reference.BitNetRunner`)
  with its BitLinears on a matvec backend (the golden model, or a device);
- :func:`integer_runner`: the integer decode (:mod:`ternary_core.integer`), the
  arithmetic a device runs when it holds the whole model.
"""

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ternary_core.errors import TernaryError
from ternary_core.model.file import load_model
from ternary_core.backend import MatvecBackend
from ternary_core.reference import BitNetRunner
from ternary_core.sampling import Sampler
from ternary_core.model.tokenizer import make_tokenizer

from .window import Window

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
    context: int = 0
    window_shifts: list = field(default_factory=list)

    @property
    def tokens_per_s(self):
        decode = self.seconds - self.prefill_seconds
        return len(self.token_ids) / decode if decode > 0 else float("inf")


def float_runner(model, backend=None):
    """Runner factory for the float numpy BitNet, every BitLinear on ``backend``
    (default: the golden model). The backend is prepared (a device uploads its
    weights) when the runner is made."""
    return lambda max_len: BitNetRunner(model, backend, max_len=max_len)


def integer_runner(model, backend=None):
    """Runner factory for the integer decode of ``model``, every ternary matvec on
    ``backend`` (default: the golden model). Compiles the fixed-point constants once."""
    try:
        from ternary_core.integer import IntegerRunner, compile_model
    except ImportError:
        raise TernaryError("--backend integer: this installation has no integer decode "
                           "(ternary_core.integer)") from None
    compiled = compile_model(model)
    return lambda max_len: IntegerRunner(compiled, backend, max_len=max_len)


class SlidingWindow:
    """Feeds a token sequence of any length to a runner whose context is ``context``.

    When the context is full, the runner is reset and the last ``context // 2`` tokens
    are fed again (:class:`host.window.Window`, the policy every backend shares), so the
    model always sees between ``context // 2`` and ``context`` tokens of history at
    positions ``0..context-1``. ``seq`` and ``shifts`` are the window's.
    """

    def __init__(self, runner, context, capacity):
        self.runner, self.window = runner, Window(context, capacity)
        self.seq, self.shifts = self.window.seq, self.window.shifts

    def feed(self, token):
        """Feed one token; return the runner's logits for the next one."""
        again = self.window.feed(token, self.runner.pos)
        if again is None:
            return self.runner.step(token)
        self.runner.reset()
        for t in again[:-1]:
            self.runner.step(t)
        return self.runner.step(token)


def generate(model, runner, prompt_ids, n_tokens, sampler, on_token=None):
    """Feed ``prompt_ids``, then sample ``n_tokens``; call ``on_token(id)`` as each arrives.

    ``runner`` is a runner factory (:func:`float_runner`, :func:`integer_runner`); a
    :class:`~ternary_core.backend.MatvecBackend` stands for ``float_runner(model, it)``.
    Past the model's context, generation goes on in a :class:`SlidingWindow`; the
    result's ``window_shifts`` says where it moved.
    """
    if isinstance(runner, MatvecBackend):
        runner = float_runner(model, runner)
    check_prompt(model, prompt_ids, n_tokens)
    context = model.config.max_position_embeddings
    t0 = time.perf_counter()
    window = SlidingWindow(runner(min(context, len(prompt_ids) + n_tokens)), context,
                           len(prompt_ids) + n_tokens)
    with np.errstate(over="ignore", invalid="ignore"):   # check_finite stops an overflow
        for t in prompt_ids:
            logits = window.feed(t)
        t_prefill = time.perf_counter() - t0
        out = []
        for _ in range(n_tokens):
            check_finite(logits, len(window.seq) - 1)
            nxt = sampler(logits)
            out.append(nxt)
            if on_token:
                on_token(nxt)
            if len(out) < n_tokens:
                logits = window.feed(nxt)
    return GenerationResult(list(prompt_ids), out, "", time.perf_counter() - t0, t_prefill,
                            context=context, window_shifts=window.shifts)


def check_finite(logits, position):
    """Stop at the first non-finite logit (a model whose numbers overflow float32) instead
    of sampling noise from it."""
    logits = np.asarray(logits)
    if logits.dtype.kind == "f" and not np.isfinite(logits).all():
        raise TernaryError(f"the model computed a non-finite logit after position {position}: "
                           "its numbers overflow float32 (check the model file's values)")


def check_token_ids(ids, vocab, what="prompt token id", positions=False):
    """Every id in ``0..vocab-1`` (Python ints of any size: checked before numpy sees them,
    which overflows past int64)."""
    for i, t in enumerate(ids):
        if not 0 <= t < vocab:
            shown = str(t) if len(str(t)) <= 24 else str(t)[:20] + "..."
            at = f" (position {i})" if positions else ""
            raise TernaryError(f"{what} {shown}{at} is outside the vocabulary (0..{vocab - 1})")


def check_prompt(model, prompt_ids, n_tokens):
    """What :func:`generate` refuses, checkable before any output or any device is opened."""
    if not prompt_ids:
        raise TernaryError("the prompt is empty: give --prompt text or --prompt-ids")
    if n_tokens < 1:
        raise TernaryError(f"tokens to generate must be at least 1, got {n_tokens}")
    check_token_ids(prompt_ids, model.config.vocab_size)


def load(path=None):
    """``(model, tokenizer)`` of the model file ``path`` (default: the shipped model); a
    tokenizer the file describes badly is an error naming the file."""
    path = Path(path) if path else default_model_path()
    model = load_model(path)
    try:
        return model, make_tokenizer(model.tokenizer, model.config.vocab_size)
    except TernaryError as exc:
        raise TernaryError(f"{path}: {exc}") from None


__all__ = ["GenerationResult", "Sampler", "SlidingWindow", "check_prompt", "check_token_ids",
           "default_model_path", "float_runner", "generate", "integer_runner", "load"]
