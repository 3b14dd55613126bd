"""Issue 24, item 1: a temperature so small that log2(e)/T overflows the integer
sampler's arithmetic (or float64 itself) samples the argmax on every backend: the integer
decode, the device's program (the Machine the RTL is checked against) and the float
reference give the greedy ids, and the device's RUN fields hold the clamped scalar."""

import numpy as np
import pytest

from ternary_core.integer import IntegerSampler
from ternary_core.integer.sampling import INV_T_MAX
from ternary_core.offload.machine import Machine
from ternary_core.sampling import Sampler
from tests.test_offload_program import PROMPT, device, golden, shipped  # noqa: F401 (fixture)

TINY_TEMPERATURES = [1e-12, 1e-24, 1e-30, 1e-300, 5e-324]


@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_integer_weights_at_a_tiny_temperature_are_the_argmax(temperature):
    rng = np.random.default_rng(24)
    print("seed 24")
    for _ in range(20):
        logits = rng.integers(-(1 << 31), 1 << 31, 300, dtype=np.int64)
        logits[rng.integers(300)] = logits.max() + 1            # one largest
        s = IntegerSampler(temperature, 0, 7)
        w = s.weights(logits)
        assert w.max() == 1 << 15 and (w > 0).sum() == 1 and np.argmax(w) == np.argmax(logits)
        assert s(logits) == int(np.argmax(logits))
        # the scalar the host sends: RunParams.inv_t_m is 16 bits, the device's SR
        # exponent 12 bits signed
        assert 0 < s.inv_t.m <= 0xFFFF and -2048 <= s.inv_t.e < 2048
        assert s.inv_t.to_float() <= INV_T_MAX


@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_float_sampler_at_a_tiny_temperature_is_the_argmax(temperature):
    rng = np.random.default_rng(24)
    logits = rng.standard_normal(300) * 5
    for top_k in (0, 40):
        assert Sampler(temperature, top_k, 3)(logits) == int(np.argmax(logits))


def test_a_huge_temperature_samples_every_token_alike():
    s = IntegerSampler(1e300, 0, 1)
    w = s.weights(np.array([0, -(1 << 31), 1 << 30, 5], np.int64))
    assert (w == 1 << 15).all()


@pytest.mark.parametrize("temperature", [1e-30, 5e-324])
def test_device_program_at_a_tiny_temperature_gives_the_greedy_ids(shipped, temperature):  # noqa: F811
    mc, program = Machine.for_model(shipped)
    want = golden(shipped, PROMPT, 12)                        # greedy
    assert golden(shipped, PROMPT, 12, temperature)[0] == want[0]
    assert device(mc, program, PROMPT, 12, temperature)[0] == want[0]
