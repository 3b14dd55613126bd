"""The board builds of ``ternary bench``, run in parallel and cached by design fingerprint.

Each requested (board, engine configuration) builds in its own folder,
``build/bench/<board>-<R>x<C>-<fmt>-<fingerprint>``, where the fingerprint covers every
source the bitstream is made from (:func:`sim.cache.design_fingerprint` and
``boards/*.py``): a folder with a ``report.json`` is a finished build of exactly that
design and is reused. Builds that are not cached run in worker processes, at most
``jobs`` at a time (the YoWASP tools are processes of their own, one core each), each
logging into ``bench.log`` in its folder; the console gets one line when a build starts
and one when it ends (or one saying it is cached). A lock file beside each folder keeps
two ``ternary bench`` runs from building the same design into it at once.
"""

import json
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from ternary_core.errors import TernaryError
from ternary_core.output_file import exclusive

BUILD_ROOT = Path("build") / "bench"
REPORT = "report.json"
FAILED_REPORT = "report.failed.json"  # a build that missed timing (boards/build.py)


@dataclass(frozen=True)
class BuildRequest:
    board: str
    config: object  # EngineConfig

    @property
    def label(self):
        c = self.config
        return f"{self.board} {c.rows}x{c.cols} {c.fmt}"


def build_folder(req, root=BUILD_ROOT):
    """The folder a build of ``req`` lives in (named by its design fingerprint)."""
    from sim.cache import design_fingerprint

    boards_src = sorted((Path(__file__).resolve().parent.parent / "boards").glob("*.py"))
    key = design_fingerprint(req.config, *(p.read_bytes() for p in boards_src))
    c = req.config
    return Path(root) / f"{req.board}-{c.rows}x{c.cols}-{c.fmt}-{key}"


def cached_report(folder):
    """The report of a finished build in ``folder``, or None."""
    for rep in (Path(folder) / REPORT, Path(folder) / FAILED_REPORT):  # bench reports misses too
        if rep.is_file():
            return json.loads(rep.read_text())
    return None


def board_build(board, config, out, log):
    """The real build (a worker's job): ``boards.build.build`` into ``out``."""
    from boards.build import build

    return build(board, rows=config.rows, cols=config.cols, fmt=config.fmt, out=out, log=log)


def _worker(build_fn, board, config, out):
    """Run in a worker process: build into ``out`` unless a concurrent run already did,
    with everything the build prints (the tools' output too) in ``out/bench.log``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out.with_name(out.name + ".lock")):  # held until the build is done
        rep = cached_report(out)
        if rep is not None:
            return rep
        with open(out / "bench.log", "w") as log:
            saved = os.dup(1), os.dup(2)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                return build_fn(board, config, out, log)
            except Exception:
                traceback.print_exc(file=log)
                raise
            finally:
                log.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])


def _one_line(exc):
    """A failure in one line: the message's first and last lines (a tool's last words)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ... ".join(lines[:1] + lines[1:][-1:])
    return text if isinstance(exc, TernaryError) else f"{type(exc).__name__}: {text}"


def build_all(requests, *, jobs=None, build_fn=board_build, root=BUILD_ROOT, log=sys.stderr):
    """Build (or reuse) every request; return their reports in the order requested.

    Parameters
    ----------
    requests : list of BuildRequest
    jobs : int or None
        Builds running at once (default ``os.cpu_count()``).
    build_fn : callable
        ``build_fn(board, config, out, log)`` builds into folder ``out``, writes
        ``out/report.json`` and returns the report. It runs in a worker process (spawned),
        so it must be a module-level function.
    root : path
        Where the build folders are.

    Raises
    ------
    TernaryError
        After every build has ended, if any failed (each is named, with its log).
    """
    jobs = jobs or os.cpu_count() or 1
    n = len(requests)
    tag = {i: f"[{i + 1}/{n}] {r.label}" for i, r in enumerate(requests)}
    folders = [build_folder(r, root) for r in requests]
    reports, seen, todo = {}, set(), []
    for i, folder in enumerate(folders):
        if folder in seen:  # the same design twice: build it once
            continue
        seen.add(folder)
        rep = cached_report(folder)
        if rep is not None:
            reports[folder] = rep
            print(f"{tag[i]}: cached ({folder})", file=log, flush=True)
        else:
            todo.append(i)
    failures = []
    if todo:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)),
                                 mp_context=get_context("spawn")) as pool:
            running, queue = {}, list(todo)
            while queue or running:
                while queue and len(running) < jobs:
                    i = queue.pop(0)
                    req = requests[i]
                    try:
                        fut = pool.submit(_worker, build_fn, req.board, req.config, folders[i])
                    except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                        failures.append(f"{req.label}: not started: {_one_line(exc)}")
                        continue
                    running[fut] = (i, time.monotonic())
                    print(f"{tag[i]}: started (log: {folders[i] / 'bench.log'})", file=log,
                          flush=True)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, t0 = running.pop(fut)
                    secs = time.monotonic() - t0
                    try:
                        rep = fut.result()
                    except Exception as exc:  # a failed build must not stop the others
                        failures.append(f"{requests[i].label}: {_one_line(exc)} "
                                        f"(log: {folders[i] / 'bench.log'})")
                        print(f"{tag[i]}: FAILED in {secs:.0f} s", file=log, flush=True)
                        continue
                    reports[folders[i]] = rep
                    timing = "" if rep.get("fmax_mhz") is None else (
                        f" (Fmax {rep['fmax_mhz']:.1f} MHz, timing "
                        f"{'met' if rep.get('timing_met') else 'NOT met'})")
                    print(f"{tag[i]}: done in {secs:.0f} s{timing}", file=log, flush=True)
    if failures:
        raise TernaryError(f"{len(failures)} of {n} builds failed: " + "; ".join(failures))
    return [reports[f] for f in folders]
