"""The SDRAM as the device carries it (the ULX3S's, docs/sdram.md): LiteDRAM at half rate
with the controller at 50 MHz in a clock domain of its own (the SDRAM at 100 MHz), a 64-bit
port in the device's ``sync`` (the ISA's SDRAM word), and where the model core keeps a
port word (the simulated board's back door)."""

from functools import lru_cache

import numpy as np

from .controller import LiteDramCore
from .litedram_core import litedram_verilog

MODULE = "MT48LC16M16"          # the ULX3S's 32 MB part
RATE = "1:2"                    # HalfRateGENSDRPHY: the SDRAM at twice the controller's clock
CLOCK_HZ = 50_000_000           # the controller's clock (docs/sdram.md: meets timing with margin)
DOMAIN = "sdram"                # its clock domain; the PHY's fast clock is "sdram2x"
PORT_BITS = 64                  # the ISA's SDRAM word (isa.SDRAM_WORD_BYTES)
_CORE_ARGS = dict(module=MODULE, clk_freq=CLOCK_HZ, rate=RATE, port_data_width=PORT_BITS)


def device_sdram_core(variant="model", pins=None, **generate_args):
    """The :class:`LiteDramCore` a device with SDRAM carries: ``"model"`` (LiteDRAM's
    SDRAM model and timing checker, for the simulated board; clocks ``sdram``) or
    ``"board"`` with the ``sdram`` resource's ``pins`` (clocks ``sdram`` and ``sdram2x``,
    see :class:`boards.sdram_clocks.SdramClocks`). ``generate_args`` go to
    :func:`~rtl.sdram.litedram_core.litedram_verilog` (tests: ``controller_timings``)."""
    return LiteDramCore(variant=variant, pins=pins, controller_domain=DOMAIN, **_CORE_ARGS,
                        **generate_args)


@lru_cache(maxsize=None)
def device_sdram_geometry():
    """The :class:`~rtl.sdram.litedram_core.SdramGeometry` of :func:`device_sdram_core`
    (generates the core's Verilog once: a few seconds)."""
    return litedram_verilog(variant="model", user_domain=True, **_CORE_ARGS)[2]


def model_bank_images(words, geometry, first=0):
    """Where the model core keeps port words ``words`` (uint64, at word addresses
    ``first``, ``first + 1``, ...): ``{bank: (indices, values)}`` of its bank memories'
    words (the controller's width), for :func:`~rtl.sdram.litedram_core.with_back_door`.

    A port word is ``port / controller`` controller words at consecutive addresses, lowest
    bits first (the core's ``_split_port``); LiteDRAM maps a controller address as row,
    bank, column (``ROW_BANK_COL``, the column lowest), and a bank's memory keeps a row's
    columns together (``row * columns + column``, in controller words)."""
    words = np.asarray(words, dtype=np.uint64)
    g = geometry
    ratio = g.data_width // g.controller_data_width
    if g.controller_data_width != 32 or ratio not in (1, 2):
        raise ValueError(f"model_bank_images handles 32-bit controller words on 32- or 64-bit "
                         f"ports, not {g.controller_data_width} on {g.data_width}")
    if first < 0 or first + len(words) > 1 << g.address_width:
        raise ValueError(f"words {first}..{first + len(words) - 1} are not all within the "
                         f"{1 << g.address_width} words of the SDRAM")
    per_row = g.ncols * 16 // g.controller_data_width      # controller words in a bank's row
    addr = (np.arange(len(words), dtype=np.int64) + first)[:, None] * ratio + np.arange(ratio)
    halves = (words[:, None] >> (32 * np.arange(ratio, dtype=np.uint64))) & np.uint64(0xFFFFFFFF)
    addr, values = addr.ravel(), halves.ravel()
    col, bank, row = addr % per_row, (addr // per_row) % g.nbanks, addr // (per_row * g.nbanks)
    index = row * per_row + col
    return {b: (index[bank == b], values[bank == b]) for b in range(g.nbanks)}


def write_readmemh(path, indices, values):
    """A ``$readmemh`` file of 32-bit ``values`` at memory ``indices`` (one ``@index``
    line wherever the indices jump)."""
    order = np.argsort(indices, kind="stable")
    indices, values = np.asarray(indices)[order], np.asarray(values)[order]
    lines = []
    expected = None
    for i, v in zip(indices.tolist(), values.tolist()):
        if i != expected:
            lines.append(f"@{i:x}")
        lines.append(f"{v:08x}")
        expected = i + 1
    path.write_text("\n".join(lines) + "\n")
