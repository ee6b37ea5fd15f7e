"""End-to-end throughput of the embedded pipeline: SQLite store, local queue, fast simulator.

    uv run python bench/engine.py [--tasks 1000] [--concurrency 32] [--speed 20000]
    uv run python bench/engine.py --workload W [--tasks 2000] [--concurrency 32] [--json]

The default run submits N tasks, runs the worker until none is queued or running, and prints a
table: tasks/s, worker CPU per step, peak RSS, and the latency from a store write to the
`changes()` event in a second process that tails the same file.

`--workload lateness` keeps 10,000 jobs of 30-90 s in flight at once, polled on the real
schedule (`--speed` scales the upstream's clock; 1 by default, a run of a few minutes), and
prints p50/p99/max poll lateness (delivery time minus the poll's due time) and peak RSS.

`--workload W` is issue #10's workload, the one bench/peers.py compares with other queues: N
tasks (2,000), each one submit and three polls, every poll a delayed message with the smallest
delay (the upstream's clock runs a million times faster), an upstream that answers at once, and
the task's row written durably on every step; submitter and worker in this one process. It prints
steps/s, CPU ms per step and peak RSS (`--json`: one JSON line; `workload_w()` returns the same
dict to a caller that imports this file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import event_loop  # noqa: E402
from core.config import Settings  # noqa: E402
from core.demo import demo_requests  # noqa: E402
from core.models import TASK_COLUMNS, Task, TaskEvent, TaskStatus, VideoRequest  # noqa: E402
from core.runtime import Runtime  # noqa: E402
from core.store.sqlite import SqliteStore  # noqa: E402
from core.store.sqlite_db import EVENT_COLUMNS, encode  # noqa: E402
from core.supervisor import active_count, supervise  # noqa: E402
from core.upstream import UpstreamState, UpstreamStatus  # noqa: E402

W_POLLS = 3
W_SPEEDUP = 1e6
"""How much faster W's upstream clock runs: the worker's poll delays shrink to microseconds."""

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
        "succeeded": counts[TaskStatus.SUCCEEDED],
        "failed": counts[TaskStatus.FAILED],
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


class InstantUpstream:
    """W's upstream: accepts at once and says SUCCESS on the third poll of each job."""

    name = "instant"
    provider = "t8star"
    speedup = W_SPEEDUP
    accepts_notify_hook = False

    def __init__(self) -> None:
        self.polls: dict[str, int] = {}

    def describe(self) -> str:
        return "instant upstream (workload W)"

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def submit(
        self, request: VideoRequest, api_key: str | None = None, notify_hook: str | None = None
    ) -> str:
        upstream_id = f"w{len(self.polls)}"
        self.polls[upstream_id] = 0
        return upstream_id

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus:
        done = self.polls[upstream_task_id] = self.polls[upstream_task_id] + 1
        if done >= W_POLLS:
            return UpstreamStatus(
                UpstreamState.SUCCEEDED, "SUCCESS", 100, video_url="https://example.com/v.mp4"
            )
        return UpstreamStatus(UpstreamState.RUNNING, "IN_PROGRESS", done * 30)


async def submit_and_finish(
    runtime: Runtime, requests: list[VideoRequest], check_every: float, parallel: int = 1
) -> tuple[float, float, float]:
    """Submit while the worker runs, until no task is active: (seconds, CPU s, submit seconds).

    `parallel` submits go at once (their writes then share commits).
    """
    stop = asyncio.Event()
    started, cpu_started = time.perf_counter(), time.process_time()
    worker = asyncio.create_task(supervise(runtime, stop))
    for first in range(0, len(requests), parallel):
        batch = requests[first : first + parallel]
        await asyncio.gather(*(runtime.service.submit(one, actor="bench") for one in batch))
    submitted = time.perf_counter() - started
    while await active_count(runtime):
        if worker.done():
            worker.result()  # the worker stopped: say why rather than wait for ever
            raise RuntimeError("the worker stopped before the tasks finished")
        await asyncio.sleep(check_every)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stop.set()
    await worker
    return elapsed, cpu, submitted


FINISHED_EVENTS = 5
"""History rows of each task `--finished` puts in the file: submit, start, three polls."""


def fill_finished(db_path: Path, count: int) -> None:
    """Put `count` succeeded tasks, with FINISHED_EVENTS history rows each, in the file.

    In SQL (a recursive count), not through the store: 200,000 tasks take seconds, not minutes.
    The file must exist with its tables (a store opened it once).
    """
    done = Task.new(VideoRequest.parse({"prompt": "an old finished job", "duration": 10}))
    done = msgspec.structs.replace(
        done, status=TaskStatus.SUCCEEDED, progress=100, polls=3, completed_at=done.created_at
    )
    values = [encode(name, getattr(done, name)) for name in TASK_COLUMNS]
    event = TaskEvent(task_id=done.id, kind="poll", attempt=1, progress=50, latency_ms=120.0)
    event_values = [encode(name, getattr(event, name)) for name in EVENT_COLUMNS]
    uuid = "substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || "
    uuid += "substr(h, 17, 4) || '-' || substr(h, 21)"
    count_up = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
    task_exprs = [uuid if name == "id" else "?" for name in TASK_COLUMNS]
    event_exprs = ["t.id" if name == "task_id" else "?" for name in EVENT_COLUMNS]
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute(
            f"INSERT INTO video_tasks ({', '.join(TASK_COLUMNS)}) {count_up}"
            f" SELECT {', '.join(task_exprs)} FROM (SELECT lower(hex(randomblob(16))) AS h FROM n)",
            [count, *values[1:]],
        )
        for _ in range(FINISHED_EVENTS):
            db.execute(
                f"INSERT INTO task_events ({', '.join(EVENT_COLUMNS)})"
                f" SELECT {', '.join(event_exprs)} FROM video_tasks AS t WHERE t.status = ?",
                [*event_values[1:], TaskStatus.SUCCEEDED.value],
            )
        db.execute("COMMIT")
    finally:
        db.close()


async def workload_w(
    db_path: Path, tasks: int = 2000, concurrency: int = 32, finished: int = 0
) -> dict[str, Any]:
    """Run W once on a fresh file at `db_path`; steps/s, CPU ms per step, peak RSS and counts.

    `finished`: that many succeeded tasks (and their history) are in the file before W starts.
    """
    settings = Settings(
        db_path=db_path, concurrency=concurrency, reconcile_interval=60.0, task_deadline=1e12
    )
    if finished:
        store = SqliteStore(db_path)
        await store.open()  # makes the tables
        await store.close()
        fill_finished(db_path, finished)
    built = Runtime.from_settings(settings)
    upstream = InstantUpstream()
    runtime = Runtime(settings, built.store, built.queue, upstream, built.keys)
    requests = demo_requests(tasks)
    async with runtime:
        threads_before = thread_cpu()
        elapsed, cpu, _ = await submit_and_finish(runtime, requests, check_every=0.01)
        threads = {
            name: spent - threads_before.get(name, 0.0) for name, spent in thread_cpu().items()
        }
        steps = sum(runtime.worker.stats.deliveries.values())
        counts = await runtime.store.count_by_status()
    per_step = 1000 / max(steps, 1)
    writer = sum(spent for name, spent in threads.items() if name.startswith(WRITER_THREAD))
    return {
        "system": "videoq",
        "config": f"one process, sqlite + local queue, concurrency {concurrency}",
        "finished_before": finished,
        "tasks": tasks,
        "succeeded": counts[TaskStatus.SUCCEEDED] - finished,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "cpu_ms_per_step": cpu * per_step,
        # Where that CPU goes: the event loop's thread and SQLite's writing thread (Linux only).
        "loop_cpu_ms_per_step": threads.get("MainThread", 0.0) * per_step,
        "writer_cpu_ms_per_step": writer * per_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


WRITER_THREAD = "videoq-sqlite"
"""The name (a prefix) of the SqliteWriter's thread."""


def thread_cpu() -> dict[str, float]:
    """CPU seconds each live thread of this process has used, by name (/proc: Linux only)."""
    tick = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the name, which may hold spaces
        spent[thread.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return spent


class TimedUpstream:
    """The lateness run's upstream: each job takes 30-90 s of its clock, `speedup` x real time."""

    name = "timed"
    provider = "t8star"
    accepts_notify_hook = False

    def __init__(self, speedup: float, seed: int = 10) -> None:
        self.speedup = speedup
        self.jobs: dict[str, tuple[float, float]] = {}
        self._random = random.Random(seed)

    def describe(self) -> str:
        return f"timed upstream (jobs of 30-90 s, speed x{self.speedup:g})"

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def submit(
        self, request: VideoRequest, api_key: str | None = None, notify_hook: str | None = None
    ) -> str:
        upstream_id = f"j{len(self.jobs)}"
        self.jobs[upstream_id] = (time.time(), self._random.uniform(30.0, 90.0))
        return upstream_id

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus:
        started, seconds = self.jobs[upstream_task_id]
        done = (time.time() - started) * self.speedup / seconds
        if done >= 1.0:
            return UpstreamStatus(
                UpstreamState.SUCCEEDED, "SUCCESS", 100, video_url="https://example.com/v.mp4"
            )
        return UpstreamStatus(UpstreamState.RUNNING, "IN_PROGRESS", max(1, int(done * 100)))


class Lateness:
    """Stands in for the worker's poll-lateness histogram and keeps every value."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


async def lateness_run(
    db_path: Path, tasks: int = 10_000, concurrency: int = 32, speed: float = 1.0
) -> dict[str, Any]:
    """`tasks` jobs in flight at once, polled on the real schedule; p50/p99 poll lateness, RSS."""
    settings = Settings(
        db_path=db_path, concurrency=concurrency, reconcile_interval=60.0, task_deadline=1e12
    )
    built = Runtime.from_settings(settings)
    runtime = Runtime(settings, built.store, built.queue, TimedUpstream(speed), built.keys)
    request = VideoRequest.parse({"prompt": "a fox in the snow", "duration": 10})
    lateness = Lateness()
    runtime.worker.stats.poll_lateness = lateness  # type: ignore[assignment]
    async with runtime:
        # 64 submits at a time: all the jobs are in flight within seconds, as in a burst.
        elapsed, cpu, submitted = await submit_and_finish(runtime, [request] * tasks, 0.25, 64)
        steps = sum(runtime.worker.stats.deliveries.values())
    return {
        "tasks": tasks,
        "speed": speed,
        "submit_seconds": submitted,
        "seconds": elapsed,
        "steps": steps,
        "polls": len(lateness.values),
        "lateness_p50_s": percentile(lateness.values, 0.50),
        "lateness_p99_s": percentile(lateness.values, 0.99),
        "lateness_max_s": max(lateness.values),
        "cpu_ms_per_step": cpu * 1000 / max(steps, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload",
        choices=["W", "lateness"],
        help="issue #10's workload W, or the lateness run (10,000 jobs of 30-90 s in flight)",
    )
    parser.add_argument("--tasks", type=int, help="tasks (default 1000; W: 2000; lateness: 10000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--speed", type=float, help="upstream clock speed (default 20000; lateness: 1)"
    )
    parser.add_argument(
        "--finished",
        type=int,
        default=0,
        help="W only: succeeded tasks (with their history) in the file before the run",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.finished < 0 or (args.finished and args.workload != "W"):
        parser.error("--finished takes a count of 0 or more, with --workload W only")
    loop = Settings(_env_file=None).event_loop  # type: ignore[call-arg]  # as the commands pick it
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        if args.workload == "W":
            tasks = args.tasks or 2000
            result = event_loop.run(
                workload_w(db_path, tasks, args.concurrency, args.finished), loop
            )
        elif args.workload == "lateness":
            tasks, speed = args.tasks or 10_000, args.speed or 1.0
            result = event_loop.run(lateness_run(db_path, tasks, args.concurrency, speed), loop)
        else:
            args.tasks, args.speed = args.tasks or 1000, args.speed or 20000.0
            result = event_loop.run(run(args, db_path), loop)
    if args.json:
        print(json.dumps(result))
        return
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    print(f"{'metric':<24}{'value':>12}")
    print("-" * 36)
    for name, value in result.items():
        if isinstance(value, str):
            print(f"{name:<24}{value}")
            continue
        shown = f"{value:,.0f}" if isinstance(value, int) or value >= 100 else f"{value:,.2f}"
        print(f"{name:<24}{shown:>12}")


if __name__ == "__main__":
    main()
