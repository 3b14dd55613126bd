"""The VM's fused attention passes, ATTN SCORES and ATTN PV (rtl/vm/attention.py), on
random states: RTL == isa's Python Machine (bit-exact), VMEM and the registers compared
after a program of ATTN passes with ``n`` = 0, 1, ``pos + 1`` and more keys, rows shorter
than, equal to and longer than the 32 lanes (and of length 0), scores that saturate 24
bits, weights that saturate 18, V scales read at ``kv_scale_addr`` of rows at every
alignment, and the compiler's chain (PV on the scores and the max of the SCORES before
it)."""

import pytest

from ternary_core.offload import isa
from ternary_core.offload.isa import AttnFn, Instr, Op, RunParams, Space, VFn
from tests.vm_helpers import (dump_ir_program, random_words, result_fields, rtl_fields,
                              run_both, set_ir_program, small_limits)

Q_AT, SC_AT, OUT_AT, RED_AT, DUMP_AT, ZERO_AT = 0, 128, 640, 880, 960, 1023   # VMEM regions
IR_MAX0, IR_SH = 8, 9             # IRs the program sets: PV's max score, its shift
RED_IRS = 7                       # the passes reduce into IR[1..7] in turn


def dump_ir(i, at):
    """VOPs that write IR[i] into VMEM (as vm_helpers.dump_ir_program does: its low 40
    bits at ``at``, ``round(IR / 2**24)`` at ``at + 1``)."""
    return [Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.VMEM, a_addr=ZERO_AT, b_space=Space.IR,
                  b_addr=i, d_space=Space.VMEM, d_addr=at + k, sh_imm=sh, bits=48)
            for k, sh in ((0, 0), (1, 24))]


def limits():
    # rows of up to 64 bytes (two lane chunks), 32 key rows, 32 V scales
    return small_limits(head_dim=64, kv_heads=2, context=16, vmem_words=1024)


def scale_words(rng, n, e_lo, e_hi):
    """Canonical scalar words (a few zeros) with exponents in ``e_lo..e_hi``."""
    out = []
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(isa.scalar_word(0, -1024))
        else:
            out.append(isa.scalar_word(int(rng.integers(1 << 15, 1 << 16)),
                                       int(rng.integers(e_lo, e_hi + 1))))
    return out


class Program:
    """ATTN passes with their own VMEM regions (scores/scales at SC_AT on, PV outputs at
    OUT_AT on) and the VMEM contents they start from."""

    def __init__(self, rng, lim, pos, vmem, top):
        self.rng, self.lim, self.pos, self.vmem, self.top = rng, lim, pos, vmem, top
        self.ops, self.sc, self.out, self.red, self.n_red = [], SC_AT, OUT_AT, RED_AT, 0

    def _red_ir(self):
        """The next pass's reduction IR (in turn); its value is dumped after the pass."""
        self.n_red += 1
        return 1 + (self.n_red - 1) % RED_IRS

    def _dump(self, red_ir):
        self.ops += dump_ir(red_ir, self.red)
        self.red += 2
        assert self.red <= DUMP_AT

    def _rows(self, n, stride, v):
        """A first row for ``n`` rows of ``2**stride`` bytes (V rows: their scales too
        below half of KVS)."""
        rows = self.lim.depth(Space.KVK) >> stride
        if v:
            rows = min(rows, self.lim.depth(Space.KVS) // 2)
        return int(self.rng.integers(0, rows - n + 1)) << stride

    def _n(self, n):
        """``(n field, npos)`` for ``n`` keys, or ``pos + 1`` keys for ``n`` None."""
        return (0, 1) if n is None else (n, 0)

    def scores(self, n, ln, stride, *, e=(-40, 0), sh_imm=None, q=None, row0=None):
        """SCORES over ``n`` keys (None: pos + 1) of ``ln`` bytes; its scales (D) have
        exponents in ``e``; its query at ``q`` and its first row at ``row0`` (default:
        random). Returns (its D address, its key count, the IR of its max)."""
        rng, keys = self.rng, self.pos + 1 if n is None else n
        d, self.sc = self.sc, self.sc + keys
        assert self.sc <= OUT_AT
        self.vmem[d:d + keys] = scale_words(rng, keys, *e)
        q = q if q is not None else int(rng.integers(Q_AT, Q_AT + 128 - ln + 1))
        red_ir = self._red_ir()
        field_n, npos = self._n(n)
        self.ops.append(Instr(Op.ATTN, fn=AttnFn.SCORES, n=field_n, npos=npos,
                              a_space=Space.VMEM, a_addr=q, b_space=Space.KVK,
                              b_addr=self._rows(keys, stride, False) if row0 is None else row0,
                              d_space=Space.VMEM,
                              d_addr=d, len=ln, stride=stride, red_ir=red_ir,
                              sh_imm=int(rng.integers(-32, 32)) if sh_imm is None else sh_imm,
                              sh_ir=int(rng.integers(0, 16))))    # (SCORES ignores sh_ir)
        self._dump(red_ir)
        return d, keys, red_ir

    def pv(self, n, ln, stride, *, a=None, ir_b=IR_MAX0, sh_imm=None):
        """PV over ``n`` keys (None: pos + 1) of ``ln`` bytes, scores at ``a`` (default:
        random values around IR[ir_b] written here)."""
        rng, keys = self.rng, self.pos + 1 if n is None else n
        if a is None:
            a, self.sc = self.sc, self.sc + keys
            assert self.sc <= OUT_AT
            self.vmem[a:a + keys] = [int(v) for v in self.top - rng.integers(-400, 5000, keys)]
        d, self.out = self.out, self.out + ln
        assert self.out <= DUMP_AT
        red_ir = self._red_ir()
        field_n, npos = self._n(n)
        self.ops.append(Instr(Op.ATTN, fn=AttnFn.PV, n=field_n, npos=npos, a_space=Space.VMEM,
                              a_addr=a, b_space=Space.KVV, b_addr=self._rows(keys, stride, True),
                              d_space=Space.VMEM, d_addr=d, len=ln, stride=stride,
                              sh_imm=int(rng.integers(0, 32)) if sh_imm is None else sh_imm,
                              sh_ir=IR_SH, ir_b=ir_b, red_ir=red_ir))
        self._dump(red_ir)


@pytest.mark.parametrize("round_", range(2))
def test_attn_passes_match_the_reference_machine(round_, rng):
    lim = limits()
    assert isa.IR_COUNT - 1 >= IR_SH
    pos = int(rng.integers(0, lim.context - 1))
    vmem = [0] * lim.vmem_words
    vmem[Q_AT:Q_AT + 128] = [int(v) for v in rng.integers(-128, 128, 128)]
    vmem[Q_AT:Q_AT + 64] = [-128] * 32 + [127] * 32                 # extreme queries
    vmem[Q_AT + 100:Q_AT + 104] = [300, -129, 1 << 20, -(1 << 30)]   # only the low 8 bits count
    kvk, kvv = (random_words(rng, lim.depth(Space.KVK), 8) for _ in range(2))
    kvk[:64] = [-128] * 64                                          # extreme rows
    kvs = scale_words(rng, lim.depth(Space.KVS), -6, 6)
    p = Program(rng, lim, pos, vmem, int(rng.integers(-(1 << 22), 1 << 22)))
    ir = [0] * isa.IR_COUNT
    ir[IR_MAX0], ir[IR_SH] = p.top, int(rng.integers(-4, 13))

    p.scores(0, 16, 4)                                   # no keys: IR = -2**47
    p.pv(0, 16, 4)                                       # no keys: D = 0, IR = 0
    p.scores(1, 32, 5)
    p.pv(1, 32, 5)
    d, keys, mx = p.scores(None, int(rng.integers(1, 32)), 5)      # pos + 1 keys, len < 32
    p.pv(None, 32, 5, a=d, ir_b=mx, sh_imm=16)           # the compiler's chain
    d, keys, mx = p.scores(int(rng.integers(2, 12)), 64, 6)        # two lane chunks
    p.pv(keys, 64, 6, a=d, ir_b=mx)
    p.pv(int(rng.integers(2, 12)), int(rng.integers(33, 64)), 6)
    # saturation: the extreme rows with the extreme queries (dots of 32 * 128 * 128 and
    # -32 * 127 * 128) and scales that shift left; scores from random rows near 24 bits
    p.scores(2, 32, 5, e=(0, 8), sh_imm=0, q=Q_AT, row0=0)
    p.scores(2, 32, 5, e=(0, 8), sh_imm=0, q=Q_AT + 32, row0=0)
    p.scores(int(rng.integers(4, 12)), 32, 5, e=(-12, 4), sh_imm=int(rng.integers(-4, 4)))
    p.pv(int(rng.integers(2, 12)), 16, 4, sh_imm=-20)    # weights past 18 bits
    p.scores(3, 0, 4)                                    # len 0: scores 0
    p.pv(3, 0, 4)                                        # len 0: no outputs, the sum
    p.scores(int(rng.integers(1, 9)), 1, 0)              # rows of one byte
    p.pv(int(rng.integers(1, 9)), 8, 3)
    vmem[ZERO_AT] = 0

    img = {Space.VMEM: vmem, Space.KVK: kvk, Space.KVV: kvv, Space.KVS: kvs,
           Space.TOKENS: [0] * lim.depth(Space.TOKENS)}
    prog = set_ir_program(ir) + p.ops + dump_ir_program(DUMP_AT, ZERO_AT) + [Instr(Op.END)]
    res, ref, mems = run_both(rng, lim, img, prog, RunParams(pos0=pos, n_feed=1, n_new=1, state=3))
    assert rtl_fields(res) == result_fields(ref)
    got, want = mems[Space.VMEM]
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"VMEM differs at {bad[:8]}: rtl {[got[i] for i in bad[:4]]} " \
                    f"ref {[want[i] for i in bad[:4]]}; program {p.ops}"
    # the test is not vacuous: scores saturated both ways, weights too, sums were written
    scores = [isa.to_signed(v, 40) for v in want[SC_AT:p.sc]]
    assert (1 << 23) - 1 in scores and -(1 << 23) in scores
    outs = [isa.to_signed(v, 40) for v in want[OUT_AT:p.out]]
    assert any(outs) and max(map(abs, outs)) >= 1 << 17
