import os
import random
import zlib

# The suite runs one worker per core (`make test`: -n 2 on CI's two cores); a thread pool per
# worker in torch/OpenBLAS on top oversubscribes the cores (transformers' generate on a tiny
# model: 2.7 s a call with it, 0.06 s without). Set before numpy and torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# One seed per run, shared with hypothesis (the Makefile passes the same value as
# --hypothesis-seed). Repeat a run with TERNARY_TEST_SEED=N make test.
SEED = int(os.environ.get("TERNARY_TEST_SEED") or random.SystemRandom().randrange(1 << 16))


def pytest_report_header(config):
    return f"ternary test seed: {SEED} (repeat with TERNARY_TEST_SEED={SEED})"


@pytest.fixture
def seed(request):
    """A per-test seed derived from the run seed; printed so a failure can be repeated."""
    s = (SEED << 32) | zlib.crc32(request.node.nodeid.encode())
    print(f"seed: TERNARY_TEST_SEED={SEED} (per-test {s})")
    return s


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)
