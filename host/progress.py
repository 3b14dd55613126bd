"""A one-line progress display for work that takes more than a moment."""

import time


class ProgressLine:
    """One ``\\r``-updated status line on ``stream``: at most ``rate`` updates a second, and
    none before the work has run ``after`` seconds, so quick work prints nothing. The
    ``final`` update ends the line with a newline (only if a line was shown, or the work
    took ``after`` seconds)."""

    def __init__(self, stream, *, rate=4.0, after=0.0):
        self.stream, self.period, self.after = stream, 1.0 / rate, after
        self.t0 = self.last = time.perf_counter()
        self.shown = False

    @property
    def elapsed(self):
        return time.perf_counter() - self.t0

    def show(self, text, final=False):
        now = time.perf_counter()
        early = now - self.t0 < self.after
        if final and early and not self.shown:
            return
        if not final and (early or now - self.last < self.period):
            return
        self.last, self.shown = now, True
        self.stream.write("\r" + text + ("\n" if final else ""))
        self.stream.flush()
