"""`ternary bench`'s measurement path, with the board build replaced by the committed
report (the build itself is covered by test_boards.py)."""

import json

import pytest

import host.bench as bench_mod
from host.cli import main
from host.projection import REPORTS
from ternary_core.errors import TernaryError


def test_bench_writes_every_field_and_stays_near_ideal(tmp_path, monkeypatch, capsys):
    committed = json.loads((REPORTS / "icebreaker.json").read_text())
    monkeypatch.setattr(bench_mod, "cached_build", lambda name, cfg, log: committed)
    monkeypatch.setattr(bench_mod, "TOKENS", 3)
    out = tmp_path / "bench.json"
    assert main(["bench", "--configs", "4x10/base3", "--json", str(out), "--plot", str(tmp_path / "b.png")]) == 0
    res = json.loads(out.read_text())
    (row,) = res["configs"]
    assert set(bench_mod.FIELDS) <= set(row)
    assert row["ideal_cycles_per_token"] == 14976  # sum of ceil(M/4)*ceil(K/10) over the 28 layers
    assert row["ideal_cycles_per_token"] <= row["cycles_per_token"] <= 1.1 * row["ideal_cycles_per_token"]
    assert row["dsp"] == 0 and row["tokens_per_s"] == min(
        row["tokens_per_s_compute"], row["tokens_per_s_memory"], row["tokens_per_s_link"])
    assert (tmp_path / "b.png").stat().st_size > 10_000
    assert "| icebreaker | 4x10 | base3 |" in capsys.readouterr().out


def test_bench_rejects_a_malformed_config():
    with pytest.raises(TernaryError, match="ROWSxCOLS/FORMAT"):
        bench_mod.parse_config("4by10")
