"""The whole decode step on the simulated ULX3S board (Verilator: the device core with
the vector machine beside the engine), bit-exact to --backend integer."""

import json

import pytest

from host.cli import main
from host.device import Device
from host.generate import generate, integer_runner, load
from host.model_offload import ModelOffload
from boards.profiles import board
from ternary_core.integer import IntegerSampler
from ternary_core.offload.isa import Op

BOARD = "ulx3s-85f"


def cli_json(capsys, *argv):
    assert main(["generate", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_silu_model_greedy_tokens_equal_the_integer_backend(capsys, tmp_path, rng):
    """The shipped model's shape with ``hidden_act: silu`` and random weights: the SiLU GLU
    runs on the vector machine (VOP SIGMUL, the SigmoidUnit)."""
    from dataclasses import replace

    from ternary_core.model.file import save_model
    from tests.test_model_files import random_model

    shipped, _ = load()
    path = tmp_path / "silu.safetensors"
    save_model(path, random_model(rng, replace(shipped.config, hidden_act="silu")))
    capsys.readouterr()                     # the rng fixture's seed line
    args = ["--model", str(path), "--tokens", "60", "--temperature", "0", "--prompt", "KING:"]
    want = cli_json(capsys, "--backend", "integer", *args)
    got = cli_json(capsys, "--backend", "sim", "--board", BOARD, "--offload", "model", *args)
    assert got["offload"] == "model"
    assert got["token_ids"] == want["token_ids"]
    print(f"ids {got['token_ids']}; {got['device_cycles_per_token']} device cycles a token")


def test_sampled_tokens_equal_the_integer_backend():
    model, _ = load()
    prompt = list(b"JULIET:")
    want = generate(model, integer_runner(model), prompt, 48, IntegerSampler(0.8, 40, 7)).token_ids
    profile = board(BOARD)
    with Device.open_sim(profile.engine, vm_limits=profile.vm_limits, timeout=5.0) as dev:
        run = ModelOffload(dev, model, step_timeout=30)
        run.prepare()
        # the board's machine reports SMUL2 and ATTN, and the host compiles for them
        assert run.limits.compile_options() == {"smul2": True, "fuse_attention": True}
        assert {i.op for i in run.instructions} >= {Op.ATTN, Op.SVOP}
        assert run.generate(prompt, 48, 0.8, 40, 7).token_ids == want
        # the host again, on a board that kept its memory: the images whose CRC matches
        # are not sent (the program's working spaces changed in the run and are), and the
        # ids are the same
        sent, uploads = dev.link.stats.bytes_sent, dev.stats.uploads
        again = ModelOffload(dev, model, step_timeout=30)
        again.prepare()
        assert dev.stats.resident >= len(again.stacks)          # every weight stack stayed
        assert dev.stats.uploads - uploads == len(again.stacks) + len(again.images) - dev.stats.resident
        assert dev.link.stats.bytes_sent - sent < sum(len(s.packed) for s in again.stacks) / 10
        assert again.generate(prompt, 48, 0.8, 40, 7).token_ids == want


def test_greedy_ids_equal_the_integer_backend_over_the_full_context_and_as_the_window_slides(capsys):
    """300 greedy tokens of the shipped model through the CLI: the full context of 256
    positions, then the window slides (about two minutes on the simulated board)."""
    args = ["--tokens", "300", "--temperature", "0", "--prompt", "KING:"]
    want = cli_json(capsys, "--backend", "integer", *args)
    got = cli_json(capsys, "--backend", "sim", "--board", BOARD, "--offload", "model", *args)
    assert got["offload"] == "model"
    assert got["token_ids"] == want["token_ids"] and got["window_shifts"] == want["window_shifts"]
    assert want["window_shifts"]
    assert got["link_bytes_per_token"] <= 16 and got["device_cycles_per_token"] > 0


def test_dropped_and_corrupted_frames_give_the_right_ids_or_a_clear_error(seed):
    """Faults during the upload and during the RUNs: the ids equal the integer backend's,
    or the run stops with one DeviceError; never a wrong id."""
    from host.transport import SimulatedBoardTransport
    from tests.faulty_transport import FaultRates, FaultyTransport, right_ids_or_one_clear_error

    model, _ = load()
    prompt = list(b"ROMEO:")
    want = generate(model, integer_runner(model), prompt, 24, IntegerSampler(0.0)).token_ids
    profile = board(BOARD)
    rates = FaultRates(flip=0.03, drop=0.02, dup=0.02, garbage=0.02)
    inner = SimulatedBoardTransport(profile.engine, vm_limits=profile.vm_limits)
    ft = FaultyTransport(inner, tx=rates, rx=rates, seed=seed)
    # a frame's reply takes the simulated board milliseconds: a lost one is retried after
    # 0.25 s (1 s made the upload through these faults 73 s of the test's 85)
    with Device(ft, timeout=0.25, retries=30) as dev:
        run = ModelOffload(dev, model, step_timeout=5.0)

        def run_ids():
            run.prepare()
            return run.generate(prompt, 24, 0.0).token_ids

        right_ids_or_one_clear_error(run_ids, want, ft, dev)
