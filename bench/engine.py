"""End-to-end throughput of the embedded pipeline: SQLite store, local queue, fast simulator.

    uv run python bench/engine.py [--tasks 1000] [--concurrency 32] [--speed 20000]

Submits N tasks, runs the worker until none is queued or running, and prints a table: tasks/s,
worker CPU per step, peak RSS, and the latency from a store write to the `changes()` event in a
second process that tails the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings  # noqa: E402
from core.demo import demo_requests  # noqa: E402
from core.runtime import Runtime  # noqa: E402
from core.supervisor import supervise  # noqa: E402

SUBSCRIBER = """
import asyncio, json, sys, time
from core.store.sqlite import SqliteStore

async def main(path, expected):
    store = SqliteStore(path)
    await store.open()
    lags, finished = [], set()
    async for change in store.changes():
        if change.op == "SYNC":
            print("ready", flush=True)
            continue
        lags.append(time.time() - change.task.updated_at.timestamp())
        if change.task.status.terminal:
            finished.add(change.task.id)
            if len(finished) >= expected:
                break
    await store.close()
    print(json.dumps(lags), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace, db_path: Path) -> dict[str, float]:
    settings = Settings(
        db_path=db_path,
        sim_speedup=args.speed,
        sim_failure_rate=0.1,
        concurrency=args.concurrency,
        poll_min_interval=3.0,
        reconcile_interval=5.0,
        task_deadline=1e7,  # the simulated clock runs fast; our own queueing time does not
    )
    async with Runtime.from_settings(settings) as runtime:
        subscriber = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(db_path), str(args.tasks)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert subscriber.stdout is not None
        assert subscriber.stdout.readline().strip() == "ready"
        started, cpu_started = time.perf_counter(), time.process_time()
        for request in demo_requests(args.tasks):
            await runtime.service.submit(request, actor="bench")
        submitted = time.perf_counter()
        await supervise(runtime, asyncio.Event(), until_idle=True)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        lags = json.loads(subscriber.stdout.readline())
        subscriber.wait(timeout=30)
        steps = sum(runtime.worker.stats.deliveries.values())
        counts = await runtime.store.count_by_status()
    return {
        "tasks": args.tasks,
        "succeeded": counts["succeeded"],
        "failed": counts["failed"],
        "submit_per_s": args.tasks / (submitted - started),
        "tasks_per_s": args.tasks / elapsed,
        "steps": steps,
        "steps_per_task": steps / args.tasks,
        "cpu_ms_per_step": cpu * 1000 / max(steps, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "feed_events": len(lags),
        "feed_p50_ms": percentile(lags, 0.50) * 1000,
        "feed_p99_ms": percentile(lags, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--speed", type=float, default=20000.0, help="simulator speed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp) / "bench.db"))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    print(f"{'metric':<24}{'value':>12}")
    print("-" * 36)
    for name, value in result.items():
        shown = f"{value:,.0f}" if isinstance(value, int) or value >= 100 else f"{value:,.2f}"
        print(f"{name:<24}{shown:>12}")


if __name__ == "__main__":
    main()
