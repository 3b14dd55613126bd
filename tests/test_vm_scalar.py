"""The VM's SOP and SVOP classes (rtl/vm: the ScalarUnit, integer registers, scalar
loads/stores) on random states: RTL == isa's Python Machine (bit-exact), registers and
memories compared after a random program; scalar overflow stops both the same way."""

import pytest

from ternary_core.offload import isa
from ternary_core.offload.isa import Instr, Op, Red, RunParams, SFn, Space, SVFn
from tests.vm_helpers import (dump_ir_program, dump_sr_program, place, random_images,
                              random_scalar_words, result_fields, rtl_fields, run_both,
                              set_ir_program, small_limits)

DUMP_AT, ZERO_AT, SR_AT, D_LIMIT = 480, 511, 440, 440
SRS = list(range(0, 24))          # the SR registers the programs use (and dump)
# spaces of canonical scalar words (the scalar unit, as the golden model's scalars, takes
# canonical inputs only: a LOAD of any other word is not a scalar)
LOAD_SPACES = (Space.VMEM, Space.EMBS, Space.HEADS, Space.KVS)


def small_irs(rng):
    """IR[1..15]: small shifts and exponents, mid-size integers (from_int inputs)."""
    out = [0]
    for i in range(1, isa.IR_COUNT):
        out.append(int(rng.integers(-40, 41)) if i < 8 else int(rng.integers(-(1 << 30), 1 << 40)))
    return out


def random_sop(rng, lim, pos, token):
    fn = SFn(int(rng.integers(0, len(SFn))))
    sr = lambda: int(rng.choice(SRS))          # noqa: E731
    f = dict(fn=fn, d=sr(), a=sr(), b=sr())
    if fn == SFn.FROM_INT:
        f.update(a=int(rng.integers(8, 16)), b=int(rng.integers(0, 8)),
                 imm=int(rng.integers(-1000, 1 << 20)))
    elif fn == SFn.SHIFT:
        f.update(b=int(rng.integers(0, 8)), imm=int(rng.integers(-60, 61)))
    elif fn in (SFn.LOAD, SFn.STORE):
        sp = Space(rng.choice(LOAD_SPACES if fn == SFn.LOAD else (Space.VMEM, Space.KVS)))
        dyn = {}
        off = 0
        if rng.random() < 0.5:
            src, k = int(rng.integers(0, 2)), int(rng.integers(0, 3))
            dyn = {"dyn_sel": int(rng.integers(1, 4)), "dyn_src": src, "dyn_k": k}
            off = (token if src else pos) << k
        depth = D_LIMIT if sp == Space.VMEM else lim.depth(sp)
        addr = place(rng, depth, 1, off)
        if addr is None:                       # the offset leaves no room: a static address
            dyn, addr = {}, place(rng, depth, 1)
        f.update(s_space=sp, s_addr=addr, **dyn)
    elif fn in (SFn.IADD, SFn.IMAXE):
        f.update(d=int(rng.integers(1, 16)), a=int(rng.integers(0, 16)), b=int(rng.integers(0, 16)),
                 c=int(rng.integers(0, 16)), imm=int(rng.integers(-(1 << 31), 1 << 31)))
        if fn == SFn.IMAXE:
            f.update(a=sr())
    return Instr(Op.SOP, **f)


def random_svop(rng, lim, pos, token):
    while True:
        fn = SVFn(int(rng.integers(0, 3)))
        n = int(rng.integers(0, 33))
        a_sp = Space(rng.choice((Space.VMEM, Space.EMBS, Space.KVS)))
        b_sp = Space(rng.choice((Space.SR, Space.VMEM, Space.HEADS)))
        if b_sp == a_sp:
            b_sp = Space.SR
        a = place(rng, lim.depth(a_sp), n)
        b = int(rng.choice(SRS)) if b_sp == Space.SR else place(rng, lim.depth(b_sp), n)
        d_sp = Space(rng.choice((Space.VMEM, Space.KVS)))
        depth = D_LIMIT if d_sp == Space.VMEM else lim.depth(d_sp)
        avoid = [(a, a + n)] if d_sp == a_sp else []
        if d_sp == b_sp:
            avoid.append((b, b + n))
        d = place(rng, depth, n)
        if a is None or b is None or d is None:
            continue
        if n and any(not (d + n <= lo or d >= hi) for lo, hi in avoid):
            continue
        red = Red.MAXE if fn == SVFn.MAXE or rng.random() < 0.5 else Red.NONE
        return Instr(Op.SVOP, fn=fn, n=n, a_space=a_sp, a_addr=a, b_space=b_sp, b_addr=b,
                     d_space=d_sp if fn != SVFn.MAXE else 0, d_addr=d if fn != SVFn.MAXE else 0,
                     b2=int(rng.choice(SRS)), red=red, red_ir=int(rng.integers(1, 16)))


def check(rng, lim, img, ops, ir, pos):
    img[Space.VMEM][ZERO_AT] = 0
    prog = (set_ir_program(ir) + ops + dump_ir_program(DUMP_AT, ZERO_AT)
            + dump_sr_program(SR_AT, SRS) + [Instr(Op.END)])
    res, ref, mems = run_both(rng, lim, img, prog, RunParams(pos0=pos, n_feed=1, n_new=1, state=99),
                              spaces=(Space.VMEM, Space.KVS))
    assert rtl_fields(res) == result_fields(ref), ops
    for sp, (got, want) in mems.items():
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{sp.name} differs at {bad[:8]}: rtl {[got[i] for i in bad[:4]]} " \
                        f"ref {[want[i] for i in bad[:4]]}; program {ops}"
    return res


@pytest.mark.parametrize("round_", range(3))
def test_random_sops_match_the_reference_machine(round_, rng):
    lim = small_limits()
    pos = int(rng.integers(0, lim.context - 1))
    img = random_images(rng, lim, tokens_below=8)
    # VMEM words that LOAD may read as scalars: canonical ones
    img[Space.VMEM] = random_scalar_words(rng, lim.vmem_words)
    token = img[Space.TOKENS][pos]
    ops = [random_sop(rng, lim, pos, token) for _ in range(40)]
    check(rng, lim, img, ops, small_irs(rng), pos)


@pytest.mark.parametrize("round_", range(2))
def test_random_svops_match_the_reference_machine(round_, rng):
    lim = small_limits()
    pos = int(rng.integers(0, lim.context - 1))
    img = random_images(rng, lim, tokens_below=8)
    img[Space.VMEM] = random_scalar_words(rng, lim.vmem_words, -600, 600)
    token = img[Space.TOKENS][pos]
    ops = [random_svop(rng, lim, pos, token) for _ in range(12)]
    check(rng, lim, img, ops, small_irs(rng), pos)


@pytest.mark.parametrize("case", ["mul", "shift", "from_int_negative", "svop"])
def test_scalar_overflow_stops_the_run_where_the_reference_does(case, rng):
    lim = small_limits()
    img = random_images(rng, lim, tokens_below=8)
    big, small = isa.scalar_word(40000, 1500), isa.scalar_word(50000, -1500)
    img[Space.SRINIT][1:4] = [big, big, small]
    img[Space.VMEM][:4] = [big] * 4
    ir = [0, 2000, -5] + [0] * 13
    first = Instr(Op.SOP, fn=SFn.IADD, d=9, imm=77)   # a write before the fault stays
    fault = {
        "mul": Instr(Op.SOP, fn=SFn.MUL, d=5, a=1, b=2),
        "shift": Instr(Op.SOP, fn=SFn.SHIFT, d=5, a=1, b=1, imm=100),
        "from_int_negative": Instr(Op.SOP, fn=SFn.FROM_INT, d=5, a=2, b=0),
        "svop": Instr(Op.SVOP, fn=SVFn.SMUL, n=4, a_space=Space.VMEM, a_addr=0, b_space=Space.SR,
                      b_addr=2, d_space=Space.VMEM, d_addr=100),
    }[case]
    ops = [first, fault]
    res = check(rng, lim, img, ops, ir, 3) if case != "svop" else None
    if case == "svop":
        # the RTL writes the products it has before it stops: compare registers and status only
        prog = set_ir_program(ir) + ops + [Instr(Op.END)]
        res, ref, _ = run_both(rng, lim, img, prog, RunParams(pos0=3, n_feed=1, n_new=1, state=99), spaces=())
        assert rtl_fields(res) == result_fields(ref)
    assert res["status"] == isa.MachineStatus.SCALAR_OVF
    assert res["err_pc"] == len(set_ir_program(ir)) + 1 and res["err_pos"] == 3
