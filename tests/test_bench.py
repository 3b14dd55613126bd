"""`ternary bench`: its measurement path (the board build replaced by the committed
report; the build itself is covered by test_boards.py) and its parallel, cached build
scheduler (with a stand-in for nextpnr that records how it was run)."""

import json
import os
import time

import pytest

import host.bench as bench_mod
from host.bench_builds import BuildRequest, build_all, build_folder
from host.cli import main
from host.projection import REPORTS
from boards.profiles import board
from ternary_core.errors import TernaryError


def test_bench_writes_every_field_and_stays_near_ideal(tmp_path, monkeypatch, capsys):
    committed = json.loads((REPORTS / "icebreaker.json").read_text())
    asked = {}

    def fake_build_all(requests, *, jobs, log):
        asked.update(labels=[r.label for r in requests], jobs=jobs)
        return [committed for _ in requests]

    monkeypatch.setattr(bench_mod, "build_all", fake_build_all)
    monkeypatch.setattr(bench_mod, "TOKENS", 3)
    out = tmp_path / "bench.json"
    assert main(["bench", "--configs", "4x10/base3", "--jobs", "3", "--json", str(out),
                 "--plot", str(tmp_path / "b.png")]) == 0
    assert asked == {"labels": ["icebreaker 4x10 base3"], "jobs": 3}
    res = json.loads(out.read_text())
    (row,) = res["configs"]
    assert set(bench_mod.FIELDS) <= set(row)
    assert row["ideal_cycles_per_token"] == 14976  # sum of ceil(M/4)*ceil(K/10) over the 28 layers
    assert row["ideal_cycles_per_token"] <= row["cycles_per_token"] <= 1.1 * row["ideal_cycles_per_token"]
    assert row["dsp"] == 0 and row["tokens_per_s"] == min(
        row["tokens_per_s_compute"], row["tokens_per_s_memory"], row["tokens_per_s_link"])
    assert (tmp_path / "b.png").stat().st_size > 10_000
    assert "| icebreaker | matvec | 4x10 | base3 |" in capsys.readouterr().out


def test_bench_rejects_a_malformed_config():
    with pytest.raises(TernaryError, match="ROWSxCOLS/FORMAT"):
        bench_mod.parse_config("4by10")


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "argument --jobs: must be at least 1, got 0"),
    (["--jobs", "two"], "argument --jobs: expected an integer, got 'two'"),
    (["--boards", ","], "argument --boards: expected comma-separated names with none empty, got ','"),
    (["--configs", " , "], "argument --configs: expected comma-separated names with none empty"),
])
def test_bench_rejects_arguments_that_name_nothing(capsys, argv, message):
    try:
        code = main(["bench", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- the parallel build scheduler, with a stand-in for the board build -------------------

WAIT = 30.0  # seconds before a stand-in gives up waiting (a scheduler bug, not slowness)


def _count(folder):
    return len(os.listdir(folder)) if folder.is_dir() else 0


def _wait_for(cond, what):
    end = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"stand-in build waited {WAIT:g} s for {what}")
        time.sleep(0.01)


def stand_in_build(board_name, config, out, log):
    """Runs in a worker process. Each build waits until ``jobs`` builds have started (so
    it passes only if that many run at once); the one named "slow" also waits until all
    the others have ended; "broken" fails as a tool would; "crash" kills its worker."""
    root = out.parent
    plan = json.loads((root / "plan.json").read_text())
    (root / "started").mkdir(exist_ok=True)
    (root / "ended").mkdir(exist_ok=True)
    (root / "started" / out.name).touch()
    print(f"stand-in build of {board_name}", file=log)
    if board_name == "crash":  # the worker process dies (as if killed)
        os._exit(3)
    _wait_for(lambda: _count(root / "started") >= plan["jobs"], f"{plan['jobs']} builds at once")
    if board_name == "slow":
        _wait_for(lambda: _count(root / "ended") >= plan["n"] - 1, "the other builds")
    if board_name == "broken":
        raise TernaryError("the broken build failed:\nnextpnr: no route for net x")
    report = {"board": board_name, "rows": config.rows, "pid": os.getpid(), "fmax_mhz": 50.0,
              "timing_met": True}
    (out / "report.json").write_text(json.dumps(report))
    (root / "ended" / out.name).touch()
    return report


def _requests(names):
    return [BuildRequest(n, board("icebreaker").engine) for n in names]


def _build(tmp_path, names, jobs):
    (tmp_path / "plan.json").write_text(json.dumps({"jobs": jobs, "n": len(set(names))}))
    log = tmp_path / "progress.log"
    with open(log, "w") as f:
        try:
            return build_all(_requests(names), jobs=jobs, build_fn=stand_in_build,
                             root=tmp_path, log=f)
        finally:
            f.flush()


def _progress(tmp_path):
    return (tmp_path / "progress.log").read_text().splitlines()


def test_builds_run_jobs_at_a_time_in_worker_processes_and_return_in_request_order(tmp_path):
    names = ["slow", "a", "b", "c"]
    reports = _build(tmp_path, names, jobs=2)
    assert [r["board"] for r in reports] == names  # although "slow" finished last
    assert len({r["pid"] for r in reports}) == 2 and os.getpid() not in {r["pid"] for r in reports}
    lines = _progress(tmp_path)
    for i, n in enumerate(names):
        tag = f"[{i + 1}/4] {n} 4x10 base3: "
        assert sum(line.startswith(tag + "started (log: ") for line in lines) == 1
        assert sum(line.startswith(tag + "done in ")
                   and line.endswith(" s (Fmax 50.0 MHz, timing met)") for line in lines) == 1
    done = [line.split("]")[1].split()[0] for line in lines if ": done in " in line]
    assert done[-1] == "slow" and len(lines) == 8
    log = build_folder(_requests(["a"])[0], tmp_path) / "bench.log"
    assert log.read_text().startswith("stand-in build of a")


def test_built_designs_are_cached_and_a_repeated_design_is_built_once(tmp_path):
    first = _build(tmp_path, ["a", "b", "a"], jobs=2)
    assert [r["board"] for r in first] == ["a", "b", "a"] and _count(tmp_path / "started") == 2
    again = _build(tmp_path, ["b", "a"], jobs=2)
    assert again == [first[1], first[0]]
    assert _count(tmp_path / "started") == 2  # nothing was built the second time
    lines = _progress(tmp_path)
    assert len(lines) == 2 and all(": cached (" in line for line in lines)


def test_a_failed_build_is_named_after_the_others_have_finished(tmp_path):
    with pytest.raises(TernaryError) as err:
        _build(tmp_path, ["a", "broken", "b"], jobs=2)
    broken = build_folder(_requests(["broken"])[0], tmp_path)
    assert str(err.value) == ("1 of 3 builds failed: broken 4x10 base3: the broken build failed: "
                              f"... nextpnr: no route for net x (log: {broken / 'bench.log'})")
    assert "\n" not in str(err.value)
    assert "[2/3] broken 4x10 base3: FAILED in " in (tmp_path / "progress.log").read_text()
    assert "Traceback" in (broken / "bench.log").read_text()
    # the builds that worked are kept for the next run
    for n in ("a", "b"):
        assert (build_folder(_requests([n])[0], tmp_path) / "report.json").is_file()


def test_a_dead_worker_fails_its_build_and_the_rest_with_a_clear_error(tmp_path):
    with pytest.raises(TernaryError, match=r"^2 of 2 builds failed: crash 4x10 base3: "
                                           r"BrokenProcessPool: .*; a 4x10 base3: ") as err:
        _build(tmp_path, ["crash", "a"], jobs=1)
    assert "\n" not in str(err.value)


def test_a_model_offload_row_reads_each_steps_cycles_back(monkeypatch, rng):
    """The model-offload row on a device in Python (its stand-in 1000 cycles a step):
    cycles at context 1, 128 and 256 come from CYCLES (READ_MEM), the ideal from isa's
    program_cost, tokens/s from the build's Fmax and the link."""
    from host.device import Device
    from ternary_core.model.config import BitNetConfig
    from ternary_core.offload.cost import program_cost
    from ternary_core.offload.limits import DeviceLimits
    from tests.python_device import CYCLES_PER_STEP, PythonDevice
    from tests.test_model_files import random_model

    model = random_model(rng, BitNetConfig(max_position_embeddings=256, hidden_size=32,
                                           intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1))
    opened = []

    def open_sim(cfg, **kw):
        opened.append(kw["vm_limits"])
        return Device(PythonDevice(DeviceLimits.for_config(model.config), engine=cfg))

    monkeypatch.setattr(bench_mod.Device, "open_sim", staticmethod(open_sim))
    profile = board("ulx3s-85f")
    rep = {"fmax_mhz": 80.0, "target_mhz": 75, "timing_met": True, "luts": 1, "ffs": 2, "dsp": 3,
           "bram": 4}
    row = bench_mod.measure_model_row(profile, profile.engine, rep, model, open("/dev/null", "w"))
    assert opened == [profile.vm_limits]
    assert row["offload"] == "model" and set(bench_mod.FIELDS) <= set(row)
    assert row["cycles_at_context"] == {"1": CYCLES_PER_STEP, "128": CYCLES_PER_STEP, "256": CYCLES_PER_STEP}
    assert row["tokens_per_s_compute"] == 80e6 / CYCLES_PER_STEP
    assert 0 < row["link_bytes_per_token"] <= 16
    assert row["tokens_per_s"] == min(row["tokens_per_s_compute"], row["tokens_per_s_link"])
    assert row["ideal_at_context"]["256"] > row["ideal_at_context"]["1"] > 0   # attention grows
    assert row["ideal_cycles_per_token"] == row["ideal_at_context"]["256"] and row["context"] == 256
    # a board build that holds 128 positions (its report's vm_limits): the row's figures are
    # those of context 128, the largest it holds
    row = bench_mod.measure_model_row(profile, profile.engine, {**rep, "vm_limits": {"context": 128}},
                                      model, open("/dev/null", "w"))
    assert row["context"] == 128 and row["ideal_cycles_per_token"] == row["ideal_at_context"]["128"]
    assert row["ideal_at_context"]["128"] < row["ideal_at_context"]["256"]
