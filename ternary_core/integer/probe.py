"""Does the integer decode track the float reference on *this* model? (issue 22, item 5)

The integer decode (int8 activations, int8 embeddings and KV cache, the exp2 table) agrees
with the float reference on 97–99% of top-1 predictions for trained models and for
transformers-initialized checkpoints, but on a chaotic model (every weight N(0, 1): the
float model nudged by 1e-5 relative disagrees with itself on 1–4% of positions) it falls to
69–84% (docs/integer-error-analysis.md). Such a model cannot be run exactly in integers,
and a plausible wrong answer is the worst outcome, so ``ternary import`` measures every
model it writes (:func:`probe`) and records the result in the model file
(:class:`~ternary_core.model.file.IntegerProbe`); a model below :data:`BOUND` is refused
wherever integer numerics are asked for (``host/backends.py``).

The probe is :func:`.measure.compare` on random token ids (seed :data:`SEED`) in consecutive
windows of the model's context: the float reference stepped, the integer decode scored.
Measure any model file (the shipped one by default) as ``ternary import`` does:

    python -m ternary_core.integer.probe [--model M] [--positions N]
"""

import argparse
import math
import sys
import time

import numpy as np

from ..model.file import MAX_PROBE_POSITIONS, IntegerProbe
from .measure import compare

BOUND = 0.95                 # the least top-1 agreement the integer decode may run a model at
BOUND_TEXT = f"{BOUND * 100:g}%"
DEFAULT_POSITIONS = 512      # ternary import --probe-positions
SEED = 0                     # the probe's token ids: the same for every model of a vocabulary


def probe_ids(vocab_size, positions):
    """The ``positions + 1`` token ids the probe feeds (each position predicts the next)."""
    return np.random.default_rng(SEED).integers(0, vocab_size, positions + 1)


def probe(model, positions=DEFAULT_POSITIONS, progress=None):
    """Measure the integer decode against the float reference on ``model`` over
    ``positions`` positions (0: not measured); ``progress(done, total)`` as in
    :func:`.measure.compare`. Returns an :class:`IntegerProbe`."""
    if not 0 <= positions <= MAX_PROBE_POSITIONS:
        raise ValueError(f"positions must be 0..{MAX_PROBE_POSITIONS}, got {positions}")
    if positions == 0:
        return IntegerProbe(0, 0)
    with np.errstate(over="ignore", invalid="ignore"):    # compare refuses non-finite logits
        result = compare(model, probe_ids(model.config.vocab_size, positions), progress)
    return IntegerProbe(result["positions"], result["top1_agreeing"])


def below_bound(record):
    """Whether a model's record says the integer decode does not track it (None, no
    record, and a record of 0 positions, not measured, are not below)."""
    return record is not None and record.positions > 0 and record.agreement < BOUND


def percent(fraction):
    """``fraction`` as a percentage rounded *down* to 0.1, so that a value below the bound
    never prints as the bound itself (94.96% is 94.9%, not 95.0%)."""
    return f"{math.floor(fraction * 1000 + 1e-9) / 10:.1f}%"


def describe(record):
    """One line for a user: the measured agreement beside the bound."""
    if record.positions == 0:
        return "integer decode: not measured against the float reference (--probe-positions 0)"
    line = (f"integer decode: top-1 agreement {percent(record.agreement)} with the float "
            f"reference over {record.positions:,} probe positions (bound {BOUND_TEXT})")
    if below_bound(record):
        line += (": BELOW the bound, so --backend integer and --offload model (the integer "
                 "decode) refuse this model; --backend reference and --offload matvec run it")
    return line


def main(argv=None):
    from ..errors import TernaryError
    from ..model.file import load_model
    from .measure import DEFAULT_MODEL

    p = argparse.ArgumentParser(prog="python -m ternary_core.integer.probe",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    a = p.parse_args(argv)
    try:
        model = load_model(a.model)
        t0 = time.perf_counter()
        record = probe(model, a.positions)
    except (TernaryError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.model}: {describe(record)} ({time.perf_counter() - t0:.1f} s)")
    return 0


__all__ = ["BOUND", "BOUND_TEXT", "DEFAULT_POSITIONS", "SEED", "below_bound", "describe", "percent", "probe",
           "probe_ids"]


if __name__ == "__main__":
    sys.exit(main())
