"""Packed-weight decoder: one memory word in, one tile of trits out, every cycle."""

from amaranth import Cat, Const, Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.formats.native import TileLayout

# A trit is signed(2): 0b11 = -1, 0b00 = 0, 0b01 = +1. Bit 0 is "non-zero", bit 1 is
# "negative", so the MAC array selects +a / -a / 0 from the bits without arithmetic.
TRIT = signed(2)

# Thresholds of the base-3 digit: digit = (q*3) >> 8 is 0 for q < 86, 1 for q < 171, else 2.
_BASE3_T1, _BASE3_T2 = 86, 171


def ge_const(q, c):
    """``q >= c`` for a constant ``c``, as AND/OR logic from the top bit down (no carry
    chain, and no narrowed constant for lint to complain about)."""
    result = Const(1, 1)
    for i in range(len(q)):  # from the least significant bit up
        result = (q[i] & result) if (c >> i) & 1 else (q[i] | result)
    return result


def trit_from_code(nonzero, negative):
    return Cat(nonzero, negative).as_signed()


def base3_codes():
    """The five trits of each byte value 0..255 as a 10-bit code (trit ``k`` in bits
    ``2k, 2k+1``, the :data:`TRIT` encoding): the table of the ``rom`` and ``bram``
    decoders."""
    table = []
    for v in range(256):
        code = 0
        for k in range(5):
            d = (((v * 3 ** k) & 0xFF) * 3) >> 8
            nz, neg = d != 1, d == 0
            code |= (nz | (neg << 1)) << (2 * k)
        table.append(code)
    return table


class WeightDecoder(wiring.Component):
    """Decode one packed word (one tile, see :mod:`ternary_core.formats.native`) into trits.

    Parameters
    ----------
    layout : TileLayout
        Array shape and weight format; the word has ``layout.word_bytes`` bytes.
    base3_impl : "arith", "rom" or "bram"
        How a base-3 byte becomes five digits: ``arith`` computes ``q = byte*3^k mod 256``
        with shifts and adds and compares it with two thresholds; ``rom`` looks the
        byte up in a 256-entry table of 10-bit codes in logic; ``bram`` reads that table
        from a block RAM per byte, synchronously (no logic cells: the iCEBreaker's
        fabric is nearly full, its block RAMs are not). None uses a multiplier.

    Ports
    -----
    word : In(unsigned(8*word_bytes))
    trits : Out(ArrayLayout(signed(2), rows*cols))
        Trit ``n = r*cols + c``, :attr:`latency` cycles after ``word``.
    """

    def __init__(self, layout, base3_impl="arith"):
        if not isinstance(layout, TileLayout):
            raise TypeError(f"layout must be a TileLayout, not {layout!r}")
        if base3_impl not in ("arith", "rom", "bram"):
            raise ValueError(f"base3_impl must be 'arith', 'rom' or 'bram', not {base3_impl!r}")
        self.layout = layout
        self.base3_impl = base3_impl
        super().__init__({
            "word": In(unsigned(8 * layout.word_bytes)),
            "trits": Out(data.ArrayLayout(TRIT, layout.word_trits)),
        })

    @property
    def latency(self):
        """Cycles from ``word`` to ``trits``: 1 for the block-RAM table (its read is
        registered), else 0 (combinational)."""
        return 1 if self.layout.fmt == "base3" and self.base3_impl == "bram" else 0

    def elaborate(self, platform):
        m = Module()
        n = 0
        for b in range(self.layout.word_bytes):
            byte = self.word[8 * b: 8 * b + 8]
            if self.layout.fmt == "2bit":
                digits = self._decode_2bit(byte)
            elif self.base3_impl == "bram":
                digits = self._decode_base3_bram(m, byte, b)
            else:
                digits = self._decode_base3(byte)
            for trit in digits:
                m.d.comb += self.trits[n].eq(trit)
                n += 1
        return m

    @staticmethod
    def _decode_2bit(byte):
        # code = w+1: 0 -> -1, 1 -> 0, 2 -> +1 (3 never appears in a packed word)
        return [trit_from_code(~byte[2 * i], ~byte[2 * i] & ~byte[2 * i + 1]) for i in range(4)]

    def _decode_base3(self, byte):
        if self.base3_impl == "rom":
            return self._decode_base3_rom(byte)
        # q_k = byte * 3^k mod 256, each at most two adders deep (not a chain of four):
        # 3x = x + 2x, 9x = x + 8x, 27x = 9x + 2*9x, 81x = 9x + 8*9x.
        def times(q, shift):
            return (q + Cat(Const(0, shift), q[:8 - shift]))[:8]
        q9 = times(byte, 3)
        digits = []
        for q in (byte, times(byte, 1), q9, times(q9, 1), times(q9, 3)):
            ge1, ge2 = ge_const(q, _BASE3_T1), ge_const(q, _BASE3_T2)
            digits.append(trit_from_code(~ge1 | ge2, ~ge1))
        return digits

    @staticmethod
    def _decode_base3_rom(byte):
        from amaranth import Array

        rom = Array(Const(code, 10) for code in base3_codes())[byte]
        return [rom[2 * k: 2 * k + 2].as_signed() for k in range(5)]

    @staticmethod
    def _decode_base3_bram(m, byte, b):
        from amaranth.lib import memory

        m.submodules[f"base3_table{b}"] = table = memory.Memory(shape=10, depth=256, init=base3_codes())
        rd = table.read_port(transparent_for=())
        m.d.comb += rd.addr.eq(byte)
        return [rd.data[2 * k: 2 * k + 2].as_signed() for k in range(5)]
