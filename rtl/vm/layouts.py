"""Amaranth shapes of the ISA (ternary_core/offload/isa.py is the one definition): the
machine's port payloads, the RUN request as it arrives on the link, and the instruction
fields as slices of a 128-bit word."""

from amaranth import signed, unsigned
from amaranth.lib import data

from ternary_core import protocol as P
from ternary_core.offload import isa

SPACE_BITS = 5
LOAD_ADDR_BITS = P.MEM_ADDR_BITS    # the link's word address reaches every word
LOAD_DATA_BITS = 64                 # the machine's load/peek data width


def fields_layout(fields):
    """A StructLayout of ``(name, bits, signed)`` tuples (RUN_PARAMS, RUN_RESULT)."""
    return data.StructLayout({name: signed(b) if s else unsigned(b) for name, b, s in fields})


def run_layout():
    return fields_layout(isa.RUN_PARAMS)


def result_layout():
    return fields_layout(isa.RUN_RESULT)


def wire_layout(record):
    """The bits of a :class:`~ternary_core.protocol.WireRecord` as its little-endian
    bytes arrive: each field at its byte offset, with the isa's width and sign."""
    fields = {name: data.Field(signed(f.bits) if f.signed else unsigned(f.bits), 8 * record.offsets[name])
              for name, f in record.isa_fields.items()}
    return data.FlexibleLayout(8 * record.size, fields)


def run_request_layout():
    """The RUN request's argument bytes (:data:`ternary_core.protocol.RUN_REQUEST`)."""
    return wire_layout(P.RUN_REQUEST)


def load_layout(space_bits=SPACE_BITS):
    return data.StructLayout({"space": space_bits, "addr": LOAD_ADDR_BITS, "data": LOAD_DATA_BITS})


def peek_layout(space_bits=SPACE_BITS):
    return data.StructLayout({"space": space_bits, "addr": LOAD_ADDR_BITS})


def field(word, name, op=None):
    """Field ``name`` of instruction ``word`` (a 128-bit Value), as ``isa.LAYOUTS[op]``
    (or the header) places it; signed fields come out signed."""
    lay = isa.HEADER if op is None else {**isa.HEADER, **isa.LAYOUTS[op]}
    f = lay[name]
    v = word[f.lsb:f.lsb + f.width]
    return v.as_signed() if f.signed else v


def scalar_layout():
    """A scalar word's two parts (m low, e above), as isa.scalar_word packs them."""
    return data.StructLayout({"m": unsigned(isa.SW_M_BITS), "e": signed(isa.SW_E_BITS)})
