"""cocotb drivers for the Amaranth ports of our components (cocotbext style).

Amaranth flattens an interface member ``cmd`` of a stream signature into ``cmd__valid``,
``cmd__ready`` and ``cmd__payload``; struct payloads are one vector, packed by the
layout's field offsets, which :func:`pack_struct` and :func:`field` compute from the
same ``lib.data`` layout the RTL uses.
"""

import random

from amaranth.hdl import Shape

from cocotb.triggers import ReadOnly, RisingEdge


def pack_struct(layout, **fields):
    value = 0
    for name, v in fields.items():
        f = layout[name]
        width = f.width
        value |= (int(v) & ((1 << width) - 1)) << f.offset
    return value


def field(layout, raw, name):
    f = layout[name]
    v = (raw >> f.offset) & ((1 << f.width) - 1)
    if Shape.cast(f.shape).signed and v >> (f.width - 1):
        v -= 1 << f.width
    return v


class _StreamPort:
    """The handles of an Amaranth stream port on the DUT, and the stall settings."""

    def __init__(self, dut, name, clk, *, stall=0.0, rng=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.stall, self.rng = clk, stall, rng or random.Random(0)


class StreamSource(_StreamPort):
    """Drives ``valid``/``payload`` of a stream, with random idle cycles (``stall`` 0..1)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.valid.value = 0

    async def send(self, value):
        while self.stall and self.rng.random() < self.stall:
            await RisingEdge(self.clk)
        self.payload.value = value
        self.valid.value = 1
        while True:
            await ReadOnly()
            accepted = bool(self.ready.value)
            await RisingEdge(self.clk)
            if accepted:
                break
        self.valid.value = 0


class StreamSink(_StreamPort):
    """Accepts payloads, withholding ``ready`` on random cycles (``stall`` 0..1)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.ready.value = 0

    async def recv(self, max_cycles=1_000_000):
        for _ in range(max_cycles):
            ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await ReadOnly()
            got = ready and bool(self.valid.value)
            raw = int(self.payload.value) if got else None
            await RisingEdge(self.clk)
            if got:
                self.ready.value = 0
                return raw
        raise TimeoutError(f"no payload on {self.valid._name} after {max_cycles} cycles")
