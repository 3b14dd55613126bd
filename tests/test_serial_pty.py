"""The serial backend run for real: ``ternary generate --backend serial`` through pyserial
on a pseudo-terminal, bridged to the simulated board with the UART PHY (the device top a
board has), on a clean line and on a line that drops and corrupts bytes."""

import json

import pytest

# Imported at collection, not first inside a test: DeviceBackend's ``log=sys.stderr``
# default is bound at import, and a test's capsys stream is closed after that test.
import host.matvec_offload  # noqa: F401
from host.cli import main
from sim.pty_bridge import LineFaults, PtyBridge
from boards.profiles import board

# Few steps: the UART PHY simulates every bit (about 1 s per step of the shipped model).
GEN = ["generate", "--prompt", "JU", "--tokens", "2", "--seed", "3"]


def _run(capsys, argv):
    capsys.readouterr()  # drop what came before (the seed line)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def engine():
    return board("icebreaker").engine


def test_serial_generate_on_a_pty_equals_the_reference(capsys, engine):
    code, out, _ = _run(capsys, GEN + ["--json", "--backend", "reference"])
    assert code == 0
    ref = json.loads(out)
    with PtyBridge(engine) as bridge:
        code, out, err = _run(capsys, GEN + ["--json", "--backend", "serial",
                                             "--port", bridge.port])
    assert code == 0, err
    got = json.loads(out)
    assert got["backend"] == "serial" and got["mode"] == "resident"
    assert got["token_ids"] == ref["token_ids"] and len(got["token_ids"]) == 2
    # everything went through the pty and the board's UART: the upload and the tokens' traffic
    assert bridge.bytes_to_board > 119_808 and bridge.bytes_from_board > 0
    assert bridge.board_stats.startswith("board:")
    assert f"{bridge.bytes_to_board} bytes in" in bridge.board_stats


def test_serial_generate_through_a_damaging_line_gives_the_right_tokens_or_a_clear_error(
        capsys, engine, seed):
    code, ref_text, _ = _run(capsys, GEN + ["--backend", "reference"])
    assert code == 0
    # Positions inside the traffic a clean run makes (upload and 3 steps: 134,779 bytes to
    # the board, 30,877 back; retries only add), so every planned fault happens.
    to_board = LineFaults.at_random(drop=2, corrupt=2, span=125_000, seed=seed)
    from_board = LineFaults.at_random(drop=2, corrupt=2, span=28_000, seed=seed + 1)
    with PtyBridge(engine, to_board=to_board, from_board=from_board) as bridge:
        code, out, err = _run(capsys, GEN + ["--backend", "serial", "--port", bridge.port])
    print(f"exit {code}; stderr:\n{err}")
    assert (to_board.dropped, to_board.corrupted) == (2, 2)
    assert (from_board.dropped, from_board.corrupted) == (2, 2)
    assert "Traceback" not in err
    if code == 0:
        assert out == ref_text
    else:  # never a wrong token: what was printed is the reference's start, then one clear line
        assert code == 2
        assert ref_text.startswith(out.rstrip("\n"))
        assert err.strip().splitlines()[-1].startswith("ternary generate: error: ")


def test_line_faults_hit_exactly_the_planned_offsets():
    f = LineFaults(drop=frozenset({1, 5}), corrupt=frozenset({3}), seed=7)
    a = f.apply(bytes(range(4)))            # offsets 0..3: drop 1, corrupt 3
    b = f.apply(bytes(range(4, 8)))         # offsets 4..7: drop 5
    assert a[:2] == bytes([0, 2]) and len(a) == 3 and a[2] != 3
    assert b == bytes([4, 6, 7])
    assert (f.dropped, f.corrupted) == (2, 1)
    with pytest.raises(ValueError, match="cannot place 5 faults in 4 bytes"):
        LineFaults.at_random(drop=3, corrupt=2, span=4, seed=0)
