"""Start-up time of the one-shot commands against `python -c "import httpx"` (issue #14).

    uv run python bench/startup.py [--runs 15]

Runs each command and the baseline in turn (interleaved, so a busy machine slows all alike) on
a temporary SQLite file with the simulator, once with bytecode cached and once without (an
empty PYTHONPYCACHEPREFIX that nothing is written to), and prints a table of median and best
wall times in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEOQ = str(Path(sys.executable).with_name("videoq"))
BASELINE = "import httpx"


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
        'python -c "import httpx"': [sys.executable, "-c", BASELINE],
        "videoq list": [VIDEOQ, "list"],
        "videoq show": [VIDEOQ, "show", task_id],
        "videoq submit": [VIDEOQ, "submit", "--prompt", "a kite"],
        "videoq cancel": [VIDEOQ, "cancel", task_id],  # refused (already cancelled): same path
        "videoq retry": [VIDEOQ, "retry", task_id],
        "videoq _ids": [VIDEOQ, "_ids"],
    }


def _run(argv: list[str], env: dict[str, str]) -> str:
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def measure(runs: int, cached: bool, env: dict[str, str]) -> dict[str, list[float]]:
    """Wall times per command, the commands interleaved run by run."""
    commands = _commands(env)
    times: dict[str, list[float]] = {name: [] for name in commands}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = _environment(Path(tmp) / "videoq.db")
        print(f"{'command':28} {'bytecode':>9} {'median ms':>10} {'best ms':>8}")
        for cached in (True, False):
            for name, values in measure(args.runs, cached, env).items():
                label = "cached" if cached else "none"
                median, best = statistics.median(values) * 1000, min(values) * 1000
                print(f"{name:28} {label:>9} {median:10.0f} {best:8.0f}")


if __name__ == "__main__":
    main()
