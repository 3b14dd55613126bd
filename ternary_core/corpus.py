"""The training corpus and its split: one definition, used by the trainer (which
trains on the first part) and by ``ternary eval`` (which scores the held-out rest); and
the windows a scored sequence is cut into."""

from .errors import TernaryError

# The corpus of the shipped model, relative to a checkout with shared/ beside it.
DEFAULT_CORPUS = "../shared/data/tinyshakespeare.txt"
VAL_FRACTION = 0.1
SPLITS = ("train", "val", "all")


def split_point(n_bytes, val_fraction=VAL_FRACTION):
    """Index of the first held-out byte: the last ``val_fraction`` of the corpus is validation."""
    return int(n_bytes * (1 - val_fraction))


def corpus_split(data, split, val_fraction=VAL_FRACTION):
    """``data`` (bytes or a uint8 array) cut to ``split``: 'train', 'val' or 'all'."""
    if split not in SPLITS:
        raise TernaryError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return data
    k = split_point(len(data), val_fraction)
    return data[:k] if split == "train" else data[k:]


def consecutive_windows(n_tokens, context):
    """``[(start, end)]``: each window feeds ``ids[start:end]`` and predicts
    ``ids[start+1:end+1]``; windows hold at most ``context`` tokens and tile ``1..n-1``."""
    spans, start = [], 0
    while start < n_tokens - 1:
        end = min(start + context, n_tokens - 1)
        spans.append((start, end))
        start = end
    return spans


__all__ = ["DEFAULT_CORPUS", "SPLITS", "VAL_FRACTION", "consecutive_windows", "corpus_split",
           "split_point"]
