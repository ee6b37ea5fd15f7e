"""The benchmarks still start: each script imports everything it needs and answers --help.

They are run by hand, never by CI, so nothing else would notice one breaking (a module named
after a standard library package in bench/ once shadowed it for every script there).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_a_benchmark_script_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_workload_w_runs_its_tasks_to_the_end(tmp_path: Path) -> None:
    # Its stand-in upstream must keep up with the Upstream port: once it did not, and the run
    # waited for ever on a worker that had died at its first step.
    engine = _bench_module("engine")

    # Enough tasks for the loop's thread to use a clock tick (10 ms) at 0.2 ms of CPU a step.
    result = await engine.workload_w(tmp_path / "w.db", tasks=60, concurrency=4)

    assert result["succeeded"] == 60
    assert result["steps"] == 60 * (1 + engine.W_POLLS)
    # The split by thread is counted in clock ticks, the total exactly: one tick of slack each.
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK") / result["steps"]
    split = result["loop_cpu_ms_per_step"] + result["writer_cpu_ms_per_step"]
    assert 0 < split <= result["cpu_ms_per_step"] + 2 * tick_ms


async def test_workload_w_can_start_on_a_file_of_finished_tasks(tmp_path: Path) -> None:
    engine = _bench_module("engine")
    path = tmp_path / "w.db"

    result = await engine.workload_w(path, tasks=5, concurrency=4, finished=40)

    assert result["finished_before"] == 40 and result["succeeded"] == 5
    with closing(sqlite3.connect(path)) as db:
        tasks = db.execute("SELECT count(DISTINCT id), count(*) FROM video_tasks").fetchone()
        history = db.execute(
            "SELECT count(*) FROM task_events WHERE task_id IN"
            " (SELECT id FROM video_tasks WHERE prompt = 'an old finished job')"
        ).fetchone()
    assert tasks == (45, 45)  # every filled task has an id of its own
    assert history == (40 * engine.FINISHED_EVENTS,)
