"""``ternary eval``: teacher-forced next-token loss of a model on a text, on any backend.

Every token of the text but the first is predicted from the tokens before it, and the
model's log-probability of the true token is summed (natural log). Text longer than the
model's context is cut into consecutive windows of the context, each scored from an
empty cache, as llama.cpp's ``perplexity`` does: window ``i`` feeds tokens
``[i*C, (i+1)*C)`` and predicts ``[i*C+1, (i+1)*C]``, so every token after the first is
predicted exactly once and the first token of each window is predicted with no history.

Reported: ``loss_nats_per_token``, ``loss_nats_per_byte`` (total nats over the UTF-8
bytes of the predicted tokens), ``bits_per_byte`` (that over ln 2), ``perplexity``
(per token), ``top1_agreement`` (share of positions whose argmax equals the float
reference backend's) and ``top1_accuracy`` (argmax equals the true next token).

The reference and integer backends score a window in one vectorized forward pass
(``score``); a device steps token by token through its matvecs.
"""

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ternary_core.corpus import SPLITS, consecutive_windows, split_point
from ternary_core.errors import TernaryError
from ternary_core.backend import GoldenBackend
from ternary_core.reference import BitNetRunner
from ternary_core.model.tokenizer import read_token_ids as read_ids

from .generate import check_finite, check_token_ids
from .progress import ProgressLine


def read_text(path, split, n_bytes, what="--text"):
    """The bytes of ``path`` cut to ``split`` ('train', 'val', 'all'), then to the
    first ``n_bytes`` (if given)."""
    p = Path(path)
    if not p.is_file():
        hint = "" if what == "--text" else "; give a text file with --text"
        raise TernaryError(f"{what}: {path} is not a file{hint}")
    if split not in SPLITS:
        raise TernaryError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    # only the bytes scored are read (a 3 GB file with --bytes 1000 reads 1000)
    size = p.stat().st_size
    start, end = {"all": (0, size), "train": (0, split_point(size)),
                  "val": (split_point(size), size)}[split]
    if n_bytes:
        end = min(end, start + n_bytes)
    with open(p, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def require_tokenizer(tok, source):
    """Raise a clear error if the model cannot turn text into tokens (checked before any
    text is read, so a tokenizer-less model says so whatever the text's state)."""
    if not tok.has_text:
        raise TernaryError(f"{source}: this model has no tokenizer (its model file says tokenizer "
                           "'none'); give token ids with --ids")


def text_ids(tok, data, source):
    """Token ids of the bytes ``data`` with tokenizer ``tok``."""
    require_tokenizer(tok, source)
    if hasattr(tok, "token_bytes"):  # byte-level: any bytes are tokens, no decoding
        return list(data)
    try:
        return tok.encode(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TernaryError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except TernaryError as exc:   # a vocabulary that cannot spell the text
        raise TernaryError(f"{source}: {exc}") from None


def predicted_bytes(tok, ids):
    """How many bytes of text the predicted tokens ``ids[1:]`` stand for (None without a
    tokenizer)."""
    if not tok.has_text:
        return None
    if hasattr(tok, "token_bytes"):
        return len(tok.token_bytes(ids[1:]))
    return len(tok.decode(ids[1:]).encode("utf-8"))


@dataclass
class EvalTotals:
    positions: int = 0
    nats: float = 0.0
    agree: int = 0
    correct: int = 0

    def add(self, logits, targets, ref_argmax):
        """Add a window's float64 logits ``(T, vocab)`` against ``targets`` ``(T,)``."""
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z[np.arange(len(targets)), targets] - np.log(np.exp(z).sum(axis=1))
        top = logits.argmax(axis=1)
        self.positions += len(targets)
        self.nats -= float(logp.sum())
        self.agree += int((top == ref_argmax).sum())
        self.correct += int((top == targets).sum())


class EvalProgress:
    """The running figures of an evaluation on a :class:`~host.progress.ProgressLine`."""

    def __init__(self, stream, total):
        self.line, self.total = ProgressLine(stream), total

    def show(self, totals, pending=0, final=False):
        """Show ``totals`` (and ``pending`` positions stepped but not yet scored)."""
        done = totals.positions + pending
        rate = done / max(self.line.elapsed, 1e-9)
        scored = max(totals.positions, 1)
        self.line.show(f"eval: {done:,}/{self.total:,} positions, "
                       f"{totals.nats / scored:.4f} nats/token, top-1 agreement "
                       f"{totals.agree / scored:.2%}, {rate:,.0f} positions/s ", final)


# The most positions scored in one vectorized pass: its attention holds (T, T) arrays,
# quadratic in T (5,000 positions took 1.66 GB); longer windows (models of a larger
# context) are stepped through the KV cache, in memory linear in T.
SCORE_AT_ONCE = 1024


def _window_logits(backend, runner, window, on_position):
    """float64 logits ``(len(window), vocab)`` after each token of ``window`` (from empty);
    ``on_position(n)`` after each of the ``n`` steps when stepping."""
    if backend.vectorized and len(window) <= SCORE_AT_ONCE:
        out = runner.score(window)
        if backend.integer:
            ints, scales = out
            return ints.astype(np.float64) * np.asarray(scales, np.float64)[:, None]
        return np.asarray(out, np.float64)
    runner.reset()
    rows = []
    for t in window:
        row = np.asarray(runner.step(int(t)), np.float64)
        rows.append(row * runner.last_logit_scale if backend.integer else row)
        on_position(len(rows))
    return np.stack(rows)


def _reference_logits(reference, window):
    if len(window) <= SCORE_AT_ONCE:
        return np.asarray(reference.score(window))
    reference.reset()
    return np.stack([np.asarray(reference.step(int(t)), np.float64) for t in window])


def check_ids(model, ids):
    """What :func:`evaluate` refuses in ``ids``, checkable before a device is opened."""
    if len(ids) < 2:
        raise TernaryError(f"eval needs at least 2 tokens of text, got {len(ids)}")
    check_token_ids(ids, model.config.vocab_size, "token id", positions=True)


def evaluate(model, backend, ids, tokenizer, log=None):
    """Score ``ids`` on ``backend`` (a :class:`host.backends.RunnerBackend`); return the
    figures as a dict (see the module docstring). The progress line goes to ``log``
    (default: stderr)."""
    context = model.config.max_position_embeddings
    check_ids(model, ids)
    ids = np.asarray(ids, dtype=np.int64)
    spans = consecutive_windows(ids.size, context)
    runner = backend.make_runner(min(context, ids.size - 1))
    reference = runner if backend.name == "reference" else \
        BitNetRunner(model, GoldenBackend(), max_len=min(context, ids.size - 1))
    totals, progress = EvalTotals(), EvalProgress(log or sys.stderr, ids.size - 1)
    t0 = time.perf_counter()
    for start, end in spans:
        window, targets = ids[start:end], ids[start + 1:end + 1]
        with np.errstate(over="ignore", invalid="ignore"):   # check_finite stops an overflow
            logits = _window_logits(backend, runner, window,
                                    lambda n: progress.show(totals, pending=n))
        bad = np.nonzero(~np.isfinite(logits).all(axis=1))[0]
        if bad.size:
            check_finite(logits[bad[0]], start + int(bad[0]))
        ref_argmax = logits.argmax(axis=1) if reference is runner else \
            _reference_logits(reference, window).argmax(axis=1)
        totals.add(logits, targets, ref_argmax)
        progress.show(totals)
    seconds = time.perf_counter() - t0
    progress.show(totals, final=True)
    n_bytes = predicted_bytes(tokenizer, ids.tolist())
    per_token = totals.nats / totals.positions
    per_byte = totals.nats / n_bytes if n_bytes else None
    return {
        "backend": backend.name,
        "positions": totals.positions,
        "windows": len(spans),
        "context": context,
        "bytes": n_bytes,
        "loss_nats_per_token": per_token,
        "loss_nats_per_byte": per_byte,
        "bits_per_byte": per_byte / math.log(2) if per_byte is not None else None,
        "perplexity": math.exp(per_token),
        "top1_agreement": totals.agree / totals.positions,
        "top1_accuracy": totals.correct / totals.positions,
        "seconds": round(seconds, 3),
    }


__all__ = ["consecutive_windows", "evaluate", "predicted_bytes", "read_ids", "read_text",
           "text_ids"]
