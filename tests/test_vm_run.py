"""The VM's run protocol (rtl/vm): run parameters, the position loop (gen, token, CYCLES,
n_done), every error status (BAD_PARAMS, PROG_END, BAD_OPCODE, BAD_TOKEN from TCHECK and
EMIT) with the position and instruction that failed, cond/gen_only skipping, and
back-pressure on ``done`` and ``peek``; RTL == isa's Python Machine."""

import pytest

from ternary_core.offload import isa
from ternary_core.offload.isa import (AttnFn, Cond, Instr, Op, RunParams, SampleFn, SFn, Space, XFn,
                                      MachineStatus, VFn)
from tests.vm_helpers import (VmRig, load_space, peek_space, random_images, result_fields,
                              rtl_fields, run_both, simulate, small_engine, small_limits)


def emit_program(vocab):
    """Per step: TCHECK; IR[1] = the step's token + the sum of squares of the tokens so
    far (the next id); counters of greedy-only, sampled-only and gen-only instructions;
    EMIT (gen only); the counters written to VMEM."""
    return [
        Instr(Op.SAMPLE, fn=SampleFn.TCHECK, n=vocab),
        Instr(Op.VOP, fn=VFn.ADD, n=1, npos=1, a_space=Space.TOKENS, a_addr=0,
              b_space=Space.NONE, d_space=Space.VMEM, d_addr=300, bits=20, red=4, red_ir=2),
        Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.TOKENS, a_addr=0, dyn_sel=1,
              b_space=Space.IR, b_addr=2, d_space=Space.VMEM, d_addr=10, dyn_src=0, bits=20,
              red=5, red_ir=1),
        Instr(Op.SOP, fn=SFn.IADD, d=3, a=3, imm=1, cond=Cond.GREEDY),
        Instr(Op.SOP, fn=SFn.IADD, d=4, a=4, imm=1, cond=Cond.SAMPLED),
        Instr(Op.SOP, fn=SFn.IADD, d=5, a=5, imm=1, gen_only=1),
        Instr(Op.SAMPLE, fn=SampleFn.EMIT, n=vocab, ir_a=1, gen_only=1),
        Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.VMEM, a_addr=511, b_space=Space.IR, b_addr=3,
              d_space=Space.VMEM, d_addr=400, bits=40),
        Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.VMEM, a_addr=511, b_space=Space.IR, b_addr=4,
              d_space=Space.VMEM, d_addr=401, bits=40),
        Instr(Op.VOP, fn=VFn.ADD, n=1, a_space=Space.VMEM, a_addr=511, b_space=Space.IR, b_addr=5,
              d_space=Space.VMEM, d_addr=402, bits=40),
        Instr(Op.END),
    ]


def images(rng, lim, tokens):
    img = random_images(rng, lim, tokens_below=8)
    img[Space.VMEM][511] = 0
    img[Space.TOKENS][:len(tokens)] = tokens
    return img


@pytest.mark.parametrize("params", [
    RunParams(pos0=0, n_feed=3, n_new=4, state=7),      # greedy: 6 steps, 4 generated ids
    # sampled (inv_t != 0): cond SAMPLED runs
    RunParams(pos0=2, n_feed=1, n_new=5, state=9, inv_t_m=40000, inv_t_e=-20, top_k=5),
    RunParams(pos0=0, n_feed=0, n_new=1, state=1),      # BAD_PARAMS: nothing fed
    RunParams(pos0=0, n_feed=1, n_new=0, state=1),      # BAD_PARAMS: nothing to generate
    RunParams(pos0=10, n_feed=4, n_new=3, state=1),     # BAD_PARAMS: past the context (16)
    RunParams(pos0=13, n_feed=1, n_new=3, state=1),     # exactly to the end of the context
], ids=["greedy", "sampled", "no-feed", "no-new", "past-context", "full-context"])
def test_runs_loop_over_positions_as_the_reference_does(params, rng):
    lim = small_limits()
    vocab = (1 << 14) - 1         # every id the program makes fits: status OK
    res, ref, mems = run_both(rng, lim, images(rng, lim, [1, 2, 3, 4, 5, 6, 7]), emit_program(vocab),
                              params, spaces=(Space.VMEM, Space.TOKENS))
    assert rtl_fields(res) == result_fields(ref)
    for sp, (got, want) in mems.items():
        assert got == want, sp.name


@pytest.mark.parametrize("case", ["tcheck", "emit", "bad-op", "bad-fn", "prog-end", "attn-fn",
                                  "xfer-no-sdram"])
def test_errors_stop_the_run_with_the_reference_status(case, rng):
    lim = small_limits()
    prog = emit_program(8)        # vocab 8: ids from 8 on are BAD_TOKEN
    toks = [1, 2, 3, 4, 5, 6, 7]
    if case == "tcheck":
        toks[2] = 9               # a fed id past the vocabulary
    elif case == "bad-op":
        prog.insert(3, Instr(Op.NOP))
    elif case == "bad-fn":
        prog.insert(3, Instr(Op.SOP, fn=len(SFn)))
    elif case == "prog-end":
        prog = prog[:-1]
    elif case == "xfer-no-sdram":  # XFER (even WAIT) on a machine without SDRAM: no hang
        prog.insert(3, Instr(Op.XFER, fn=XFn.WAIT))
    elif case == "attn-fn":       # an ATTN function past PV
        prog.insert(3, Instr(Op.ATTN, fn=len(AttnFn), n=1, a_space=Space.VMEM,
                             b_space=Space.KVK, len=2, stride=1, d_space=Space.VMEM, d_addr=100))
    words = isa.prog_words(prog)
    # the whole program memory (NOPs after the program): PROG_END comes at its end on both
    words += [0] * (2 * lim.prog_words - len(words))
    if case == "bad-op":
        words[6] |= 0xF           # opcode 15 at instruction 3
    img = images(rng, lim, toks)
    img[Space.PROG] = words
    res, ref, _ = run_both(rng, lim, img, [], RunParams(pos0=0, n_feed=4, n_new=3, state=3), spaces=(),
                           prog_image=True)
    assert rtl_fields(res) == result_fields(ref)
    if case in ("bad-op", "bad-fn", "attn-fn", "xfer-no-sdram"):
        assert res["status"] == MachineStatus.BAD_OPCODE and res["err_pc"] == 3
    assert res["status"] != MachineStatus.OK


def test_done_and_peek_wait_for_their_reader(rng):
    lim = small_limits()
    rig = VmRig(lim, small_engine(lim))
    vm = rig.vm
    out = {}

    async def tb(ctx):
        await load_space(ctx, vm, Space.VMEM, [5, -6, 7], 20)
        await load_space(ctx, vm, Space.PROG, isa.prog_words([Instr(Op.END)]))
        ctx.set(vm.run.payload, {"pos0": 0, "n_feed": 1, "n_new": 1, "state": 77, "inv_t_m": 0,
                                 "inv_t_e": 0, "top_k": 0})
        ctx.set(vm.run.valid, 1)
        await ctx.tick().until(vm.run.ready)
        ctx.set(vm.run.valid, 0)
        for _ in range(5000):                # the run: SRINIT copy, one step
            await ctx.tick()
            if ctx.get(vm.done.valid):
                break
        waited = 0
        for _ in range(200):                 # nobody reads done: it stays offered
            await ctx.tick()
            waited += ctx.get(vm.done.valid)
        out["busy"] = ctx.get(vm.busy)
        out["load_ready"] = ctx.get(vm.load.ready)
        ctx.set(vm.done.ready, 1)
        await ctx.tick()
        ctx.set(vm.done.ready, 0)
        out["waited"] = waited
        # a peek whose answer is not read at once keeps it
        ctx.set(vm.peek_req.payload, {"space": int(Space.VMEM), "addr": 21})
        ctx.set(vm.peek_req.valid, 1)
        await ctx.tick().until(vm.peek_req.ready)
        ctx.set(vm.peek_req.valid, 0)
        for _ in range(10):
            await ctx.tick()
        out["peek_valid"] = ctx.get(vm.peek.valid)
        out["peek"] = ctx.get(vm.peek.payload)
        ctx.set(vm.peek.ready, 1)
        await ctx.tick()
        ctx.set(vm.peek.ready, 0)
        out["more"] = await peek_space(ctx, vm, Space.VMEM, 3, 20)
        out["param"] = await peek_space(ctx, vm, Space.PARAM, isa.PARAM_DEPTH)

    simulate(rig, tb)
    assert out["waited"] > 150 and out["busy"] and not out["load_ready"]
    assert out["peek_valid"] and out["peek"] == (-6) & ((1 << 64) - 1) & ((1 << 40) - 1)
    assert out["more"] == [5, (-6) & ((1 << 40) - 1), 7]
    p = out["param"]
    assert [p[isa.PARAM_WORDS[k]] for k in ("pos0", "n_feed", "n_new", "state")] == [0, 1, 1, 77]
    assert p[isa.RESULT_WORDS["status"]] == MachineStatus.OK and p[isa.RESULT_WORDS["n_done"]] == 1
    assert p[isa.RESULT_WORDS["cycles"]] > 0
