"""Model offload's RUN plan (host/model_offload.py plan_runs) slides the window exactly as
SlidingWindow does for a runner that steps one token at a time."""

import numpy as np
import pytest

from host.generate import SlidingWindow
from host.model_offload import plan_runs

VOCAB = 50


def next_token(window):
    """A toy model: the next id depends on every token in the window, in order."""
    h = 7
    for t in window:
        h = (h * 31 + t + 1) % 1_000_003
    return h % VOCAB


class ToyRunner:
    """A runner (reset/step/pos) whose logits pick next_token of what it was fed."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.fed = []

    @property
    def pos(self):
        return len(self.fed)

    def step(self, token):
        self.fed.append(token)
        logits = np.zeros(VOCAB)
        logits[next_token(self.fed)] = 1
        return logits


def reference(context, prompt, n):
    window = SlidingWindow(ToyRunner(), context, len(prompt) + n)
    for t in prompt:
        logits = window.feed(t)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        if len(out) < n:
            logits = window.feed(out[-1])
    return out, window.shifts


class ToyDevice:
    """RUN semantics of the design: TOKENS by position, positions computed in order."""

    def __init__(self, context):
        self.context, self.tokens, self.runs = context, {}, []

    def run(self, pos0, ids, n_new, prefill=False):
        assert n_new >= 1
        self.runs.append((pos0, len(ids), n_new))
        assert pos0 + len(ids) + n_new - 2 <= self.context - 1
        for i, t in enumerate(ids):
            self.tokens[pos0 + i] = t
        for p in range(pos0, pos0 + len(ids) + n_new - 1):
            if p >= pos0 + len(ids) - 1:
                self.tokens[p + 1] = next_token([self.tokens[q] for q in range(p + 1)])
        return [self.tokens[pos0 + len(ids) + i] for i in range(n_new)]


@pytest.mark.parametrize("context,prompt_len,n,chunk,max_feed", [
    (16, 3, 40, 16, 100), (16, 3, 40, 5, 100), (16, 20, 30, 4, 6), (8, 1, 25, 3, 3),
    (9, 9, 9, 16, 2), (16, 16, 1, 16, 100), (16, 15, 2, 1, 7), (256, 6, 300, 16, 248)])
def test_runs_give_the_sliding_windows_ids_and_shifts(context, prompt_len, n, chunk, max_feed):
    prompt = [(3 * i + 1) % VOCAB for i in range(prompt_len)]
    want, want_shifts = reference(context, prompt, n)
    dev = ToyDevice(context)
    got, shifts, steps = plan_runs(dev.run, context, prompt, n, max_feed=max_feed, chunk=chunk)
    assert got == want and shifts == want_shifts
    assert all(f <= max_feed for _, f, _ in dev.runs)
    assert steps == sum(f + k - 1 for _, f, k in dev.runs)
