"""The whole decode step on the simulated ULX3S board (Verilator: the device core with
the vector machine beside the engine), bit-exact to --backend integer."""

import json

import pytest

from host.cli import main
from host.device import Device
from host.generate import generate, integer_runner, load
from host.offload import ModelOffload
from ternary_core.boards import board
from ternary_core.integer import IntegerSampler

BOARD = "ulx3s-85f"


def cli_json(capsys, *argv):
    assert main(["generate", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_acceptance_200_greedy_tokens_equal_the_integer_backend(capsys):
    args = ["--tokens", "200", "--temperature", "0"]
    want = cli_json(capsys, "--backend", "integer", *args)
    got = cli_json(capsys, "--backend", "sim", "--board", BOARD, "--offload", "model", *args)
    assert got["offload"] == "model"
    assert got["token_ids"] == want["token_ids"]
    assert got["link_bytes_per_token"] <= 16 and got["device_cycles_per_token"] > 0


def test_sampled_tokens_equal_the_integer_backend():
    model, _ = load()
    prompt = list(b"JULIET:")
    want = generate(model, integer_runner(model), prompt, 48, IntegerSampler(0.8, 40, 7)).token_ids
    profile = board(BOARD)
    with Device.open_sim(profile.engine, vm_limits=profile.vm_limits, timeout=5.0) as dev:
        run = ModelOffload(dev, model, step_timeout=30)
        run.prepare()
        assert run.generate(prompt, 48, 0.8, 40, 7).token_ids == want


@pytest.mark.slow
def test_past_the_full_context_the_window_slides_as_on_the_integer_backend(capsys):
    """300 tokens: the full context of 256 positions, then the window slides."""
    args = ["--tokens", "300", "--temperature", "0", "--prompt", "KING:"]
    want = cli_json(capsys, "--backend", "integer", *args)
    got = cli_json(capsys, "--backend", "sim", "--board", BOARD, "--offload", "model", *args)
    assert got["token_ids"] == want["token_ids"] and got["window_shifts"] == want["window_shifts"]
    assert want["window_shifts"]
