"""End-to-end generation with every BitLinear on the RTL (simulated board)."""

import json

import pytest

from host.cli import main
from host.device import Device
from host.matvec_offload import DeviceBackend
from host.errors import LinkClosed
from host.generate import Sampler, generate, load
from boards.profiles import board


def _ids(capsys, argv):
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    return out


@pytest.mark.parametrize("extra", [[], ["--weight-words", "4096"], ["--sim-phy", "uart"]],
                         ids=["resident", "streaming", "uart-phy"])
def test_sim_tokens_equal_reference_tokens(capsys, extra):
    n = "8" if "uart" in extra else "32"
    common = ["generate", "--json", "--seed", "1", "--tokens", n, "--prompt", "JULIET:"]
    ref = _ids(capsys, common + ["--backend", "reference"])
    sim = _ids(capsys, common + ["--backend", "sim", "--check"] + extra)
    assert len(sim["token_ids"]) == int(n)
    assert sim["token_ids"] == ref["token_ids"]
    assert sim["mode"] == ("streaming" if "--weight-words" in extra else "resident")
    assert sim["device_cycles_per_token"] > 0 and sim["link_bytes_per_token"] > 0
    if "--weight-words" in extra:  # the weights cross the link every token
        assert sim["link_bytes_per_token"] > 100_000


def test_silu_model_runs_with_either_offload_on_the_simulated_board(capsys, tmp_path, rng):
    """A SiLU model: with --offload matvec the device runs the BitLinears and the host the
    SiLU GLU, so the ids are the reference backend's (the same float code around bit-exact
    matvecs); by default the vector machine runs the whole step (its SiLU GLU: VOP SIGMUL)
    and the ids are the integer decode's."""
    from ternary_core.model.config import BitNetConfig
    from ternary_core.model.file import save_model
    from tests.test_model_files import random_model

    cfg = BitNetConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                       max_position_embeddings=32, hidden_act="silu")
    path = tmp_path / "silu.safetensors"
    save_model(path, random_model(rng, cfg))
    capsys.readouterr()                     # the rng fixture's seed line
    common = ["generate", "--json", "--model", str(path), "--prompt-ids", "5,80,200",
              "--tokens", "12", "--temperature", "0"]
    ref = _ids(capsys, common + ["--backend", "reference"])
    sim = _ids(capsys, common + ["--backend", "sim", "--board", "ulx3s-85f", "--offload", "matvec",
                                 "--check"])
    assert sim["offload"] == "matvec" and sim["token_ids"] == ref["token_ids"]
    auto = _ids(capsys, common + ["--backend", "sim", "--board", "ulx3s-85f"])
    integer = _ids(capsys, common + ["--backend", "integer"])
    assert auto["offload"] == "model" and auto["token_ids"] == integer["token_ids"]
    assert len(integer["token_ids"]) == 12


def test_board_killed_mid_generation_is_a_clear_error():
    model, tok = load()
    device = Device.open_sim(board("icebreaker").engine, timeout=1.0, retries=2)
    backend = DeviceBackend(device)
    seen = []

    def kill_after_five(t):
        seen.append(t)
        if len(seen) == 5:
            device.transport.proc.kill()

    try:
        with pytest.raises(LinkClosed, match="simulated board .* exited"):
            generate(model, backend, tok.encode("ROMEO:"), 20, Sampler(0.0), on_token=kill_after_five)
    finally:
        backend.close()
    assert len(seen) == 5


def test_serial_port_that_does_not_exist_is_a_clear_error(capsys):
    assert main(["generate", "--backend", "serial", "--port", "/dev/ttyNOPE9", "--tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "cannot open serial port /dev/ttyNOPE9" in err and "Traceback" not in err
