"""The ternary MAC array (rtl/mac_array.py): exact sums and its stated latency."""

import numpy as np
import pytest

from rtl.mac_array import TernaryMacArray
from ternary_core.golden import matvec
from tests.amaranth_helpers import run
from tests.helpers import random_int8, random_trits


def test_mac_array_sums_rows_including_extremes_after_its_latency(rng):
    dut = TernaryMacArray(3, 8)
    cases = [(random_trits(rng, 3, 8), random_int8(rng, 8)) for _ in range(40)]
    cases.append((np.full((3, 8), -1, np.int8), np.full(8, -128, np.int8)))
    cases.append((np.ones((3, 8), np.int8), np.full(8, -128, np.int8)))
    lat = dut.latency
    assert lat == 2  # three adder levels, registered after two and at the output

    async def tb(ctx):
        # a new case every cycle: the pipeline takes one per cycle and never stalls
        for n in range(len(cases) + lat - 1):
            if n < len(cases):
                w, x = cases[n]
                ctx.set(dut.trits, sum((int(t) & 3) << (2 * i) for i, t in enumerate(w.reshape(-1))))
                for i, a in enumerate(x):
                    ctx.set(dut.acts[i], int(a))
                    ctx.set(dut.neg_acts[i], -int(a))
            await ctx.tick()
            if n + 1 >= lat:
                w, x = cases[n + 1 - lat]
                assert [ctx.get(dut.sums[r]) for r in range(3)] == matvec(w, x).tolist(), n
    run(dut, tb)


@pytest.mark.parametrize("cols, latency", [(1, 1), (4, 1), (5, 2), (16, 2), (40, 3)])
def test_mac_array_latency_is_one_register_per_two_adder_levels(cols, latency):
    assert TernaryMacArray(2, cols).latency == latency
