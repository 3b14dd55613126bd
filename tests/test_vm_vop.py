"""The VM's VOP class (rtl/vm) instruction by instruction: random state (every readable
space, SR, IR, position and token) and random VOPs of every function, operand space,
dynamic address mode, shift, width and reduction; RTL == isa's Python Machine running
the same program (bit-exact), VMEM/KV memories and registers compared after it."""

import pytest

from ternary_core.offload import isa
from ternary_core.offload.isa import Instr, Op, Red, RunParams, Space, VFn
from tests.vm_helpers import (READ_SPACES, TWO_PORT, dump_ir_program, dyn_fields, place,
                              random_images, random_ir_values, random_words, result_fields,
                              rtl_fields, run_both, set_ir_program, small_limits)

DUMP_AT, ZERO_AT, D_LIMIT = 480, 511, 480      # VMEM: registers dumped above D_LIMIT
MULS_B = (Space.SR, Space.VMEM, Space.EMBS, Space.HEADS, Space.KVS)
PLAIN_B = (Space.NONE, Space.IR, Space.VMEM, Space.TMEM, Space.EMB, Space.KVK, Space.KVS,
           Space.TOKENS)
D_SPACES = (Space.NONE, Space.VMEM, Space.KVK, Space.KVV)


def random_vop(rng, lim, pos, token):
    while True:
        fn = VFn(int(rng.integers(0, len(VFn))))
        n = int(rng.integers(0, 41))
        npos = fn != VFn.ROT and rng.random() < 0.2 and n >= pos + 1
        if fn == VFn.ROT:
            n = 2 * int(rng.integers(0, 17))
        # ROT reads two elements of A a cycle: A must have two read ports (VMEM, TMEM)
        a_sp = Space(rng.choice(TWO_PORT if fn == VFn.ROT else READ_SPACES))
        b_choices = MULS_B if fn == VFn.MULS else (Space.TMEM, Space.VMEM) if fn == VFn.ROT else PLAIN_B
        b_sp = Space(rng.choice(b_choices))
        if b_sp == a_sp and (a_sp not in TWO_PORT or fn == VFn.ROT):
            continue
        d_sp = Space(rng.choice(D_SPACES))
        dyn, sel, off = dyn_fields(rng, pos, token, [0, 0, 1, 2, 3])
        offs = {1: 0, 2: 0, 3: 0}
        offs[sel] = off if sel else 0
        a_addr = place(rng, lim.depth(a_sp), n, offs[1])
        nb = n if fn != VFn.ROT else n
        b_addr = place(rng, lim.depth(b_sp), nb, offs[2]) if b_sp not in (Space.NONE, Space.SR, Space.IR) \
            else int(rng.integers(0, 16 if b_sp == Space.IR else 256))
        if a_addr is None or b_addr is None:
            continue
        d_addr = 0
        if d_sp != Space.NONE:
            depth = D_LIMIT if d_sp == Space.VMEM else lim.depth(d_sp)
            if d_sp == a_sp and fn != VFn.ROT and rng.random() < 0.4 and a_addr + offs[1] + n <= depth \
                    and offs[3] == offs[1]:
                d_addr = a_addr                   # in place
            else:
                avoid_a = (a_addr + offs[1], a_addr + offs[1] + n) if d_sp == a_sp else None
                d_addr = place(rng, depth, n, offs[3], avoid_a)
                if d_addr is None:
                    continue
                if d_sp == b_sp and n and not (d_addr + offs[3] + n <= b_addr + offs[2]
                                               or d_addr + offs[3] >= b_addr + offs[2] + nb):
                    continue
        return Instr(Op.VOP, fn=fn, n=n - (pos + 1 if npos else 0), npos=int(npos),
                     a_space=a_sp, a_addr=a_addr, b_space=b_sp, b_addr=b_addr,
                     d_space=d_sp, d_addr=d_addr, sh_imm=int(rng.integers(-32, 32)),
                     sh_ir=int(rng.integers(0, 16)), bits=int(rng.integers(2, 49)),
                     red=int(rng.integers(0, 7)), red_ir=int(rng.integers(1, 16)),
                     rbits=int(rng.integers(1, 32)), sym=int(rng.random() < 0.3), **dyn)


@pytest.mark.parametrize("round_", range(3))
def test_random_vops_match_the_reference_machine(round_, rng):
    lim = small_limits()
    pos = int(rng.integers(0, lim.context - 1))
    img = random_images(rng, lim, vmem_bits=int(rng.choice([18, 28, 40])), tokens_below=8)
    img[Space.VMEM][ZERO_AT] = 0
    token = img[Space.TOKENS][pos]
    ir = random_ir_values(rng)
    ops = [random_vop(rng, lim, pos, token) for _ in range(24)]
    prog = set_ir_program(ir) + ops + dump_ir_program(DUMP_AT, ZERO_AT) + [Instr(Op.END)]
    res, ref, mems = run_both(rng, lim, img, prog, RunParams(pos0=pos, n_feed=1, n_new=1, state=12345),
                              spaces=(Space.VMEM, Space.KVK, Space.KVV))
    assert rtl_fields(res) == result_fields(ref)
    for sp, (got, want) in mems.items():
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{sp.name} differs at {bad[:8]}: rtl {[got[i] for i in bad[:4]]} " \
                        f"ref {[want[i] for i in bad[:4]]}; program {ops}"



def test_sigmul_matches_the_reference_machine_over_the_whole_sigmoid_table(rng):
    """VOP SIGMUL (the SiLU GLU's ``x * sigmoid_q15(z)``): z at both ends and the middle
    of every table segment, both signs, past the clamp and far past it; x over 18 bits
    and wider (its low 18 bits count); B from VMEM, TMEM, IR and NONE; with shifts,
    saturation and every reduction."""
    n = 4 * 257 + 12
    x_at, z_at, w_at = 0, n, 2 * n              # x, z, wide x (64)
    d_at = w_at + 64                            # outputs: n + 64 + 200 + 40 + 8
    dump_at = d_at + n + 312
    zero_at = dump_at + 2 * isa.IR_COUNT
    lim = small_limits(vmem_words=zero_at + 1)
    img = random_images(rng, lim, vmem_bits=18, tokens_below=8)
    vmem = img[Space.VMEM]
    edges = [k * 256 + o for k in range(257) for o in (-1, 0, 1, 128)]
    clamp = [(1 << 16) - 1, 1 << 16, (1 << 16) + 1, 1 << 17, (1 << 39) - 1, -(1 << 39)]
    vmem[z_at:z_at + n] = ([v if rng.random() < 0.5 else -v for v in edges] + clamp
                           + [-v for v in clamp])
    vmem[x_at:x_at + n] = [0, 1, (1 << 17) - 1, -(1 << 17)] + random_words(rng, n - 4, 18)
    vmem[w_at:w_at + 64] = random_words(rng, 64, 40)
    vmem[zero_at] = 0
    ir = random_ir_values(rng)
    ir[1:4] = [-4096, 70000, 1234]            # IR B operands: sigmoid(-1), the clamp, 0.3

    def sigmul(n, a, b, d, bits=40, **kw):
        return Instr(Op.VOP, fn=VFn.SIGMUL, n=n, a_space=Space.VMEM, a_addr=a, b_space=b[0],
                     b_addr=b[1], d_space=Space.VMEM, d_addr=d, bits=bits, **kw)

    V, out = Space.VMEM, d_at + n
    ops = [sigmul(n, x_at, (V, z_at), d_at, red=Red.NORM, red_ir=5, rbits=17),
           sigmul(64, w_at, (V, z_at), out, bits=48, red=Red.MAXABS, red_ir=4),
           sigmul(200, x_at, (V, z_at + 300), out + 64, sh_imm=7, sh_ir=1, bits=17,
                  red=Red.SUM, red_ir=6, sym=1),
           sigmul(40, x_at + 9, (Space.TMEM, 5), out + 264, sh_imm=-3, bits=30, red=Red.MAX,
                  red_ir=7),
           sigmul(8, x_at + 50, (Space.IR, 1), out + 304, red=Red.SUMSQ, red_ir=8),
           sigmul(8, x_at + 60, (Space.IR, 2), out + 304, red=Red.ARGMAX, red_ir=9),
           sigmul(8, x_at + 70, (Space.IR, 3), out + 304, red=Red.SUM, red_ir=10),
           sigmul(8, x_at + 80, (Space.NONE, 0), out + 304, red=Red.SUM, red_ir=11)]
    prog = set_ir_program(ir) + ops + dump_ir_program(dump_at, zero_at) + [Instr(Op.END)]
    res, ref, mems = run_both(rng, lim, img, prog, RunParams(pos0=0, n_feed=1, n_new=1, state=1),
                              spaces=(Space.VMEM,))
    assert rtl_fields(res) == result_fields(ref)
    got, want = mems[Space.VMEM]
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"VMEM differs at {bad[:8]}: rtl {[got[i] for i in bad[:4]]} " \
                    f"ref {[want[i] for i in bad[:4]]}"
