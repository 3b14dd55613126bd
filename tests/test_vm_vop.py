"""The VM's VOP class (rtl/vm) instruction by instruction: random state and random
operands, RTL == isa's Python Machine executing the same instruction (bit-exact)."""

import numpy as np
import pytest

from ternary_core.offload import isa
from ternary_core.offload.isa import Instr, Op, Red, RunParams, Space, VFn
from tests.vm_helpers import (dump_ir_program, random_words, result_fields, rtl_fields, run_both,
                              set_ir_program, small_limits)


def test_vop_add_writes_and_reduces(rng):
    lim = small_limits()
    vmem = random_words(rng, lim.vmem_words, 20)
    vmem[500] = 0
    ins = Instr(Op.VOP, fn=VFn.ADD, n=40, a_space=Space.VMEM, a_addr=0, b_space=Space.VMEM,
                b_addr=100, d_space=Space.VMEM, d_addr=200, bits=16, red=Red.SUMSQ, red_ir=3)
    prog = [ins] + dump_ir_program(300, 500) + [Instr(Op.END)]
    res, ref, mems = run_both(rng, lim, {Space.VMEM: vmem}, prog, RunParams(0, 1, 1, 1))
    assert rtl_fields(res) == result_fields(ref)
    rtl, want = mems[Space.VMEM]
    assert rtl == want
