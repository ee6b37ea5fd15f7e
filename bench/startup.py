"""Start-up time of the one-shot commands against `python -c "import httpx"` (issue #14).

    uv run python bench/startup.py [--runs 15]

Runs each command and the baseline in turn (interleaved, so a busy machine slows all alike) on
a temporary SQLite file with the simulator, once with bytecode cached and once without (an
empty PYTHONPYCACHEPREFIX that nothing is written to). Prints, per command, the best, median
and worst wall time in milliseconds, the median's ratio to the baseline's median, and the median
CPU time (user + system) of the process, which a machine shared with other work inflates less.
The commands run as `.venv/bin/videoq`, not `uv run videoq` (uv adds its own start-up).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEOQ = str(Path(sys.executable).with_name("videoq"))
BASELINE = "import httpx"
BASELINE_NAME = f'python -c "{BASELINE}"'


def _environment(db_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIDEOQ_", "T8STAR_", "QSTASH_", "SUPABASE_", "PYTHON"))
    }
    env["VIDEOQ_DB"] = str(db_path)
    return env


def _commands(env: dict[str, str]) -> dict[str, list[str]]:
    task_id = _run([VIDEOQ, "submit", "--prompt", "a kite"], env).strip()
    _run([VIDEOQ, "cancel", task_id], env)
    return {
        BASELINE_NAME: [sys.executable, "-c", BASELINE],
        "videoq list": [VIDEOQ, "list"],
        "videoq show": [VIDEOQ, "show", task_id],
        "videoq submit": [VIDEOQ, "submit", "--prompt", "a kite"],
        "videoq cancel": [VIDEOQ, "cancel", task_id],  # refused (already cancelled): same path
        "videoq retry": [VIDEOQ, "retry", task_id],
        "videoq _ids": [VIDEOQ, "_ids"],
    }


def _run(argv: list[str], env: dict[str, str]) -> str:
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time of one run of `argv`."""
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - started, _children_cpu() - cpu


def measure(runs: int, cached: bool, env: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    """(wall, cpu) times per command, the commands interleaved run by run."""
    commands = _commands(env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as empty:
        run_env = dict(env)
        if not cached:
            run_env.update(PYTHONPYCACHEPREFIX=empty, PYTHONDONTWRITEBYTECODE="1")
        for argv in commands.values():
            _timed(argv, run_env)  # warm the file cache (and, when cached, the bytecode)
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_timed(argv, run_env))
    return times


def _runs(value: str) -> int:
    runs = int(value)
    if runs < 5:
        raise argparse.ArgumentTypeError("at least 5 runs, or the median means little")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=_runs, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        env = _environment(Path(tmp) / "videoq.db")
        print(
            f"{'command':28} {'bytecode':>8} {'best':>6} {'median':>6} {'worst':>6} "
            f"{'ratio':>6} {'cpu':>6}   (ms; ratio: median / baseline median)"
        )
        for cached in (True, False):
            times = measure(args.runs, cached, env)
            baseline = statistics.median(wall for wall, _ in times[BASELINE_NAME])
            for name, values in times.items():
                walls = [wall * 1000 for wall, _ in values]
                cpu = statistics.median(cpu for _, cpu in values) * 1000
                median = statistics.median(walls)
                print(
                    f"{name:28} {'cached' if cached else 'none':>8} {min(walls):6.0f} "
                    f"{median:6.0f} {max(walls):6.0f} {median / baseline / 1000:6.2f} {cpu:6.0f}"
                )
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
