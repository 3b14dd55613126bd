"""The VM's DOT and AXPY classes (rtl/vm: 32 int8 lanes) on random states: rows of every
row space with every stride (rows narrower than, equal to and wider than 32 bytes),
row counts from 0 and from ``pos + 1``, extreme bytes; RTL == isa's Python Machine."""

import pytest

from ternary_core.offload.isa import Instr, Op, RunParams, Space
from tests.vm_helpers import (dyn_fields, place, random_images, result_fields, rtl_fields,
                              run_both, small_limits)

ROW_SPACES = (Space.EMB, Space.HEAD, Space.KVK, Space.KVV)


def random_rows_op(rng, lim, pos, token, op):
    while True:
        sp = Space(rng.choice(ROW_SPACES))
        depth = lim.depth(sp)
        stride = int(rng.integers(0, 8))
        ln = int(rng.integers(0, min(1 << stride, 64) + 1))
        npos = rng.random() < 0.3
        n = pos + 1 if npos else int(rng.integers(0, 12))
        rows = depth >> stride
        if n > rows:
            continue
        dyn, sel, off = dyn_fields(rng, pos, token, [0, 2])
        if off % (1 << stride) or off >= depth:
            dyn, sel, off = {}, 0, 0
        r0 = int(rng.integers(0, rows - n - (off >> stride) + 1)) if rows - n - (off >> stride) >= 0 else None
        if r0 is None:
            continue
        a_len = ln if op == Op.DOT else n
        a = place(rng, 400, a_len)
        d_len = n if op == Op.DOT else ln
        d = place(rng, 400, d_len, 0, (a, a + a_len))
        if a is None or d is None:
            continue
        return Instr(op, n=n - (pos + 1 if npos else 0), npos=int(npos), a_space=Space.VMEM,
                     a_addr=a, b_space=sp, b_addr=r0 << stride, d_space=Space.VMEM, d_addr=d,
                     len=ln, stride=stride, **dyn)


@pytest.mark.parametrize("op", [Op.DOT, Op.AXPY])
@pytest.mark.parametrize("round_", range(2))
def test_random_rows_ops_match_the_reference_machine(op, round_, rng):
    lim = small_limits()
    pos = int(rng.integers(0, lim.context - 1))
    img = random_images(rng, lim, vmem_bits=int(rng.choice([8, 18, 40])), tokens_below=4)
    for sp in ROW_SPACES:                      # some all-extreme rows
        img[sp][:64] = [-128] * 64
    img[Space.VMEM][:64] = [-128] * 32 + [(1 << 17) - 1] * 32
    token = img[Space.TOKENS][pos]
    ops = [random_rows_op(rng, lim, pos, token, op) for _ in range(10)]
    res, ref, mems = run_both(rng, lim, img, ops + [Instr(Op.END)],
                              RunParams(pos0=pos, n_feed=1, n_new=1, state=5))
    assert rtl_fields(res) == result_fields(ref)
    got, want = mems[Space.VMEM]
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"VMEM differs at {bad[:8]}: rtl {[got[i] for i in bad[:4]]} " \
                    f"ref {[want[i] for i in bad[:4]]}; program {ops}"
