"""A transport wrapper that damages traffic on purpose, for fault-injection tests."""

import random
import time
from dataclasses import dataclass, field

from host.transport import Transport


@dataclass
class FaultRates:
    flip: float = 0.0       # per chunk: flip one random bit
    drop: float = 0.0       # per chunk: drop one random byte
    dup: float = 0.0        # per chunk: duplicate one random byte
    garbage: float = 0.0    # per chunk: insert a burst of random bytes
    stall: float = 0.0      # per read: hold incoming bytes back for stall_seconds
    stall_seconds: float = 0.5


@dataclass
class FaultCounts:
    counts: dict = field(default_factory=lambda: {"flip": 0, "drop": 0, "dup": 0, "garbage": 0, "stall": 0})

    def total(self):
        return sum(self.counts.values())


class FaultyTransport(Transport):
    def __init__(self, inner, *, tx=FaultRates(), rx=FaultRates(), seed=0):
        self.inner, self.tx, self.rx = inner, tx, rx
        self.rng = random.Random(seed)
        self.injected = FaultCounts()
        self.name = f"faulty {inner.name}"
        self._held = b""
        self._release_at = 0.0

    def _damage(self, data, rates):
        data = bytearray(data)
        r, c = self.rng, self.injected.counts
        if data and r.random() < rates.flip:
            i = r.randrange(len(data))
            data[i] ^= 1 << r.randrange(8)
            c["flip"] += 1
        if data and r.random() < rates.drop:
            del data[r.randrange(len(data))]
            c["drop"] += 1
        if data and r.random() < rates.dup:
            i = r.randrange(len(data))
            data.insert(i, data[i])
            c["dup"] += 1
        if r.random() < rates.garbage:
            i = r.randrange(len(data) + 1)
            data[i:i] = bytes(r.randrange(256) for _ in range(r.randrange(1, 40)))
            c["garbage"] += 1
        return bytes(data)

    def write(self, data):
        self.inner.write(self._damage(data, self.tx))

    def read(self, timeout):
        now = time.monotonic()
        if self._held and now < self._release_at:
            time.sleep(min(timeout, self._release_at - now))
            return b""
        if self._held:
            data, self._held = self._held, b""
            return data
        data = self.inner.read(timeout)
        if data and self.rng.random() < self.rx.stall:
            self.injected.counts["stall"] += 1
            self._held, self._release_at = self._damage(data, self.rx), now + self.rx.stall_seconds
            return b""
        return self._damage(data, self.rx) if data else data

    def close(self):
        self.inner.close()

    @property
    def proc(self):
        return self.inner.proc


def right_ids_or_one_clear_error(run_ids, want, ft, dev):
    """Through a :class:`FaultyTransport` ``ft``: ``run_ids()`` (upload and generate) gives
    ``want``, with faults injected and retried, or stops with one DeviceError of one line
    that says what it tried; never wrong ids."""
    from host.errors import DeviceError

    try:
        got = run_ids()
    except DeviceError as exc:
        assert "\n" not in str(exc) and "after" in str(exc)
        print(f"the link gave up with a clear error: {exc}")
        return
    assert got == want
    assert ft.injected.total() > 0 and dev.link.stats.retries > 0
    print(f"right ids through {ft.injected.counts} faults, {dev.link.stats.retries} retries")
