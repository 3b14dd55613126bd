"""Measure what the integer decode costs in quality against the float reference.

    python -m ternary_core.integer.measure [--model M] [--corpus FILE] [--bytes N] [--json]

Takes ``N`` bytes of the held-out split of the corpus (the last 10%, as ``ternary train``
splits it), cuts them into consecutive windows of the model's context, and runs each window
from a reset state through the float reference (:class:`~ternary_core.reference.BitNetRunner`,
stepped) and the integer decode (:meth:`IntegerRunner.score`). Each position's logits
predict the next byte of the text. Prints the float and integer next-byte loss (nats per
byte), their difference, and the top-1 agreement of the integer argmax with the float
argmax, and the largest residual-stream magnitude (real units; Q15.16 saturates at 32768).
``ternary eval`` is the user-facing tool; this is the gate's reproducible check.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import TernaryError
from ..model.file import load_model
from ..corpus import DEFAULT_CORPUS, corpus_split
from ..reference import BitNetRunner
from . import IntegerRunner, compile_model

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "shakespeare-bitnet.safetensors"


def heldout_bytes(corpus, n_bytes):
    val = corpus_split(Path(corpus).read_bytes(), "val")  # the split `ternary train` held out
    if n_bytes > len(val):
        raise TernaryError(f"--bytes {n_bytes} exceeds the held-out split ({len(val)} bytes)")
    return np.frombuffer(val[:n_bytes], np.uint8).astype(np.int64)


def log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def compare(model, ids, progress=None):
    """Score ``ids`` in consecutive windows; return the float and integer losses (nats per
    predicted token) and the top-1 agreement over all positions that predict a token.
    ``progress(done, total)`` is called after each position the float reference steps."""
    ctx = model.config.max_position_embeddings
    max_len = min(ctx, ids.size - 1)     # the caches and tables a window needs, no more
    fr = BitNetRunner(model, max_len=max_len)
    ir = IntegerRunner(compile_model(model, max_len))
    nll_f, nll_i, agree, n = 0.0, 0.0, 0, 0
    for start in range(0, ids.size - 1, ctx):
        win = ids[start:start + ctx]
        target = ids[start + 1:start + 1 + ctx]
        fr.reset()
        stepped = []
        for t in win[:target.size]:
            stepped.append(fr.step(int(t)))
            if not np.all(np.isfinite(stepped[-1])):   # NaN has no argmax to agree with
                raise TernaryError(f"the float reference computed a non-finite logit at position "
                                   f"{n + len(stepped) - 1}: the model's numbers overflow float32, "
                                   f"so no backend runs it")
            if progress:
                progress(n + len(stepped), ids.size - 1)
        flog = np.stack(stepped).astype(np.float64)
        ilog, scale = ir.score(win[:target.size])
        ilog = ilog * scale[:, None]
        rows = np.arange(target.size)
        nll_f -= log_softmax(flog)[rows, target].sum()
        nll_i -= log_softmax(ilog)[rows, target].sum()
        agree += int((flog.argmax(axis=1) == ilog.argmax(axis=1)).sum())
        n += target.size
    return {"positions": n, "float_loss_nats_per_byte": nll_f / n,
            "integer_loss_nats_per_byte": nll_i / n, "delta_nats_per_byte": (nll_i - nll_f) / n,
            "top1_agreement": agree / n, "top1_agreeing": agree,
            "residual_peak": ir.residual_peak / 2 ** 16}    # real units; saturation at 32768


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ternary_core.integer.measure",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--bytes", type=int, default=65536)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        model = load_model(a.model)
        ids = heldout_bytes(a.corpus, a.bytes)
    except (TernaryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def progress(done, total):
        if done % 256 == 0 or done == total:
            print(f"\r{done}/{total} positions", end="", file=sys.stderr, flush=True)

    res = compare(model, ids, progress)
    print(file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
