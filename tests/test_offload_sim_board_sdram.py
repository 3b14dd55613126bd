"""Models streamed from the SDRAM on the simulated board (issue 20): the RTL vector
machine's XFER unit, the device's LiteDRAM controller and LiteDRAM's model of the chip
(its timing checker on; refresh lands wherever the clock puts it, mid-burst included),
driven by the host over the link. The ids equal ``--backend integer``'s on random models
of several shapes (hidden not a power of two, GQA, tied and untied, vocab past a chunk of
rows), greedy and sampled; the image stays resident; a faulty link gives the right ids or
one clear error."""

import sys
from dataclasses import replace

import pytest

from boards.profiles import ULX3S_SDRAM_WORDS, board as board_profile
from host.device import Device
from host.generate import generate, integer_runner
from host.model_offload import ModelOffload
from ternary_core import protocol as P
from ternary_core.integer import IntegerSampler
from ternary_core.errors import TernaryError
from ternary_core.model.config import BitNetConfig
from ternary_core.model.random import random_model
from ternary_core.offload.cost import overlapped_cycles
from ternary_core.offload.isa import Space
from ternary_core.offload.limits import DEFAULT_ENGINE, DeviceLimits
from tests.test_offload_sdram import SHAPES

# One board for every shape: the largest of each field, on-chip buffers small enough that
# every stack is in several chunks (weight store halves of 8 tile words), the lm_head in
# chunks of 4 rows, one KV head's cache on chip, the logits in VMEM's single-copy bank, and
# a PROG of 256 instructions, through which every shape's program streams in segments.
# (tests/test_sim_board_sdram.py uses this board too: one Verilator build)
LIMITS = DeviceLimits(hidden=64, layers=3, heads=6, kv_heads=2, head_dim=16, ffn=96, vocab=97,
                      context=24, vmem_words=1024, prog_words=256, max_m=256, max_k=128,
                      weight_words=16, sdram_words=ULX3S_SDRAM_WORDS, emb_rows=8, kv_slots=1,
                      vmem_single=2 * 97)
ENGINE = replace(DEFAULT_ENGINE, weight_words=LIMITS.weight_words, max_m=LIMITS.max_m,
                 max_k=LIMITS.max_k)
QUIET = open("/dev/null", "w")


def integer_ids(model, prompt, n, temperature=0.0, top_k=0, seed=0):
    return generate(model, integer_runner(model), prompt, n,
                    IntegerSampler(temperature, top_k, seed)).token_ids


def streamed(rng, shape, tie, act="relu2"):
    cfg = BitNetConfig(tie_word_embeddings=tie, hidden_act=act, **SHAPES[shape])
    return random_model(rng, cfg)


@pytest.fixture(scope="module")
def board():
    with Device.open_sim(ENGINE, vm_limits=LIMITS, log=sys.stderr) as dev:
        yield dev


@pytest.mark.parametrize("shape,tie,act", [("48/6x8/2", False, "relu2"), ("36/3x12/1", True, "silu"),
                                           ("64/4x16/2", True, "relu2")])
def test_streamed_models_generate_the_integer_backends_ids(board, rng, seed, shape, tie, act):
    model = streamed(rng, shape, tie, act)
    V, ctx = model.config.vocab_size, model.config.max_position_embeddings
    prompt = [int(t) for t in rng.integers(0, V, 4)]
    run = ModelOffload(board, model, log=QUIET, step_timeout=5.0)
    run.prepare()
    mm = run.program.mm
    assert mm.sd is not None and mm.sd.head_rows < V and run.program.segmented
    n = ctx - len(prompt)                           # to the end of the context
    assert run.generate(prompt, n).token_ids == integer_ids(model, prompt, n)
    s = seed % 1000
    assert run.generate(prompt, 12, 0.8, 5, s).token_ids == integer_ids(model, prompt, 12, 0.8, 5, s)
    # the measured cycles of the last step beside the program's projection (a print: the
    # bench reports them; the projection's 20-cycle start-up is a guess)
    cycles = int.from_bytes(board.read_mem(Space.CYCLES, ctx - 2, 1, 4), "little")
    proj = overlapped_cycles(run.program, ctx - 2, words_per_cycle=0.784)
    print(f"{shape}: step at position {ctx - 2}: {cycles:,} cycles measured, "
          f"{proj:,} projected ({len(run.program.instrs)} instructions)")


def test_the_sdram_image_stays_resident_across_sessions(board, rng):
    """The second session sends neither the SDRAM image nor the program (streamed through
    PROG in segments: every step leaves segment 0 in PROG's half 0, as uploaded)."""
    model = streamed(rng, "48/6x8/2", True)
    prompt = [5, 3, 9]
    want = integer_ids(model, prompt, 6)
    writes = []
    for _ in range(2):
        requests = []
        link_request = board.link.request

        def spy(cmd, payload=b"", **kw):
            requests.append((cmd, payload))
            return link_request(cmd, payload, **kw)

        board.link.request = spy
        try:
            run = ModelOffload(board, model, log=QUIET, step_timeout=5.0)
            run.prepare()
            assert run.generate(prompt, 6).token_ids == want
            assert run.program.segmented
        finally:
            board.link.request = link_request
        writes.append([sum(1 for cmd, p in requests if cmd == P.Cmd.WRITE_MEM and p[0] == sp)
                       for sp in (Space.SDRAM, Space.PROG)])
    assert writes[0][0] > 0 and writes[0][1] > 0 and writes[1] == [0, 0]


def test_a_faulty_link_gives_the_right_ids_or_one_clear_error(rng, seed):
    from host.transport import SimulatedBoardTransport
    from tests.faulty_transport import FaultRates, FaultyTransport, right_ids_or_one_clear_error

    model = streamed(rng, "36/3x12/1", False)
    prompt = [1, 2, 3]
    want = integer_ids(model, prompt, 8)
    rates = FaultRates(flip=0.03, drop=0.02, dup=0.02, garbage=0.02)
    inner = SimulatedBoardTransport(ENGINE, vm_limits=LIMITS)
    ft = FaultyTransport(inner, tx=rates, rx=rates, seed=seed)
    with Device(ft, timeout=1.0, retries=20) as dev:
        run = ModelOffload(dev, model, log=QUIET, step_timeout=5.0)

        def run_ids():
            run.prepare()
            return run.generate(prompt, 8).token_ids

        right_ids_or_one_clear_error(run_ids, want, ft, dev)


def test_the_cli_streams_a_model_the_chip_cannot_hold_from_the_ulx3s_sdram(tmp_path, capsys, rng):
    """Issue 20's new user: a BitNet with hidden 256 (the on-chip build's limit is 128)
    runs with one command on the simulated ULX3S's SDRAM build, and its ids are the
    integer backend's."""
    import json

    from host.cli import main
    from ternary_core.model.file import save_model

    cfg = BitNetConfig(vocab_size=256, hidden_size=256, intermediate_size=384, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    path = tmp_path / "wide.safetensors"
    save_model(path, random_model(rng, cfg))
    argv = ["generate", "--model", str(path), "--prompt-ids", "5,17,2", "--tokens", "6",
            "--temperature", "0", "--json"]
    assert main(argv + ["--backend", "integer"]) == 0
    want = json.loads(capsys.readouterr().out.splitlines()[-1])["token_ids"]   # (after the seed line)
    assert main(argv + ["--backend", "sim", "--board", "ulx3s-85f", "--offload", "model"]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out.splitlines()[-1])
    assert got["token_ids"] == want
    assert "streams from the SDRAM of the ulx3s-85f's SDRAM build" in out.err
    # its tokens/s projected at the SDRAM build's clock, from its report, not the on-chip build's
    from host.projection import board_clock, report_path
    p = board_profile("ulx3s-85f")
    assert got["projection"]["clock_mhz"] == board_clock(p, "model-sdram")[0] / 1e6
    assert f"from {report_path(p, 'model-sdram').name}" in got["projection"]["line"]


def test_the_sdram_bench_measures_only_a_machine_that_equals_the_integer_backend(monkeypatch):
    """``bench_sdram.measure_models`` on a small shape: cycles against the bound at each
    measured position; and no figures at all when the board's ids differ from the
    integer backend's (here: the integer backend's made to differ)."""
    from host import bench_sdram

    shape = ("hidden 64 / 2 layers", 64, 2, 96, 4, 2, 97)
    rows = bench_sdram.measure_models(shapes=[shape], context=16, log=QUIET)
    assert [r["position"] for r in rows] == [0, 1, 2, 4, 8, 12, 14]
    for r in rows:
        assert r["ids_equal_integer"] and r["clock_mhz"] == board_profile("ulx3s-85f").vm_sdram_clock_hz / 1e6
        assert 0 < r["of_bound"] < 1 and r["cycles"] > r["bound_cycles"] > 0
    assert rows[-1]["mb"] > rows[0]["mb"]            # the KV cache of 14 positions
    real = bench_sdram._integer_ids
    monkeypatch.setattr(bench_sdram, "_integer_ids", lambda *a: [(t + 1) % 97 for t in real(*a)])
    with pytest.raises(TernaryError, match="the simulated board generated .*, the integer backend"):
        bench_sdram.measure_models(shapes=[shape], context=16, log=QUIET)


def test_the_sdram_benchs_context_mean_sums_the_steps_of_a_whole_context():
    """``context_mean``: exact where a step's cycles grow linearly with its position
    (the sum of 1000 + 10 p over p < 16 is 17,200 cycles: 16 tokens at 30 MHz are
    27,906.98 tokens/s), and below the true tokens/s where they grow faster at the end."""
    from host.bench_sdram import context_mean, positions

    def rows(cycles):
        return [{"model": "m", "position": p, "cycles": cycles(p), "clock_mhz": 30.0}
                for p in positions(16)]

    assert context_mean(rows(lambda p: 1000 + 10 * p), 16) == {"m": 27907.0}
    convex = lambda p: 1000 + p * p                          # noqa: E731
    true = 30e6 * 16 / sum(convex(p) for p in range(16))
    assert context_mean(rows(convex), 16)["m"] <= round(true, 1)
