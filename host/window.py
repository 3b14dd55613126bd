"""The sliding-window policy every backend shares: past the model's context, the last
``keep = context // 2`` tokens (the newest included) are fed again from position 0.

Why re-prefill and not a KV shift: keys enter the cache already rotated by RoPE at
their absolute position. Shifting the cache either lets positions run past the context
(where the model was never trained, and past the sin/cos tables of the integer decode
and of a device) or needs every cached key re-rotated, and on a device holding an int8
KV cache that is a second datapath with its own rounding. A re-prefill uses only
``reset`` and ``step``, which every runner and backend already has, so the float
reference, the integer decode and the device compute the same thing by construction,
and ``--check`` stays exact. It costs ``keep - 1`` extra steps every
``context - keep + 1`` tokens: about two steps per token once past the context.

:class:`host.generate.SlidingWindow` applies it to a runner that steps one token at a
time; :func:`host.model_offload.plan_runs` to a device that runs many positions per request.
"""


class Window:
    """The tokens of a sequence and where the window moved.

    ``capacity`` (at most ``context``) is how many positions the runner holds.
    ``shifts`` lists the sequence positions (0-based, prompt included) of the tokens
    whose feeding moved the window; after a shift at position ``p`` the window holds
    positions ``p - keep + 1 .. p``.
    """

    def __init__(self, context, capacity=None):
        self.context = context
        self.capacity = context if capacity is None else min(capacity, context)
        self.keep = max(1, context // 2)
        self.seq, self.shifts = [], []

    def feed(self, token, filled):
        """Record ``token``, fed after ``filled`` positions of the current window.

        Returns ``None`` when it fits the window at position ``filled``; else the window
        moves, and the tokens it starts again with are returned (the last ``keep``,
        ``token`` last), to be fed from position 0.
        """
        self.seq.append(token)
        if filled < self.capacity:
            return None
        self.shifts.append(len(self.seq) - 1)
        return self.seq[-self.keep:]
