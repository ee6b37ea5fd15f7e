"""The dashboard under load: 10,000 rows in the table and bursts of 500 changes a second.

Runs the real app headless over a real SQLite store in a temporary file; changes are written
through the store (as the worker writes them) and reach the app through its live feed, which may
merge several changes of one task into one event. During a
first burst it presses cursor keys, during a second the view and sort keys, and times how long
each key takes to be acted on. Prints a table and exits 0; it asserts nothing (tests assert
behaviour, benchmarks measure).

    uv run python bench/dashboard.py [--rows 10000] [--rate 500] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings  # noqa: E402
from core.models import Task, TaskStatus, VideoRequest  # noqa: E402
from core.runtime import Runtime  # noqa: E402
from core.store import Expect  # noqa: E402
from tui.app import VideoqApp  # noqa: E402
from tui.widgets.task_table import TaskTable  # noqa: E402

SIZE = (160, 45)
KEY_EVERY = 0.1


class MeasuredApp(VideoqApp):
    """The real app, timing each coalesced flush, each drawn frame and each answered key."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, start_worker=False, freeze_gc=True)
        self.flush_times: list[float] = []
        self.frames = 0
        self.answered: asyncio.Future[float] | None = None

    def _apply_inbox(self) -> None:
        started = time.perf_counter()
        super()._apply_inbox()
        self.flush_times.append(time.perf_counter() - started)

    def _display(self, screen: Any, renderable: Any) -> None:
        self.frames += 1
        super()._display(screen, renderable)

    def on_task_table_cursor_moved(self, _: TaskTable.CursorMoved) -> None:
        self._answer()

    def _reshow(self) -> None:
        super()._reshow()
        self._answer()

    def action_cycle_sort(self) -> None:
        super().action_cycle_sort()
        self._answer()

    def _answer(self) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(time.perf_counter())


async def fill(settings: Settings, rows: int) -> tuple[list[str], float]:
    """Store `rows` running tasks; return their ids and how long the inserts took."""
    request = VideoRequest(prompt="A lighthouse in a storm, waves breaking over the rocks")
    started = time.perf_counter()
    async with Runtime.from_settings(settings) as runtime:
        ids = []
        for n in range(rows):
            task = msgspec.structs.replace(
                Task.new(request), status=TaskStatus.RUNNING, progress=n % 100, upstream_task_id="b"
            )
            ids.append((await runtime.store.insert(task)).id)
    return ids, time.perf_counter() - started


async def burst(runtime: Runtime, ids: list[str], rate: float, seconds: float) -> int:
    """Write progress updates at `rate` per second for `seconds`; return how many were written."""
    sent = 0
    started = time.perf_counter()
    rng = random.Random(7)
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(max(1, int(rate * elapsed) - sent)):
            task_id = rng.choice(ids)
            changes = {"progress": rng.randrange(100)}
            await runtime.store.update(task_id, Expect.of(TaskStatus.RUNNING), changes)
            sent += 1
        await asyncio.sleep(0.002)
    return sent


async def press(app: MeasuredApp, key: str) -> float:
    """Post a key as the terminal would; return ms until the app has acted on it."""
    app.answered = asyncio.get_running_loop().create_future()
    sent = time.perf_counter()
    app.post_message(events.Key(key, None))
    answered = await asyncio.wait_for(app.answered, 10)
    return (answered - sent) * 1000


async def under_load(
    app: MeasuredApp, writer: Runtime, ids: list[str], rate: float, seconds: float, keys: list[str]
) -> tuple[int, dict[str, list[float]]]:
    """Write a burst while pressing `keys` in turn every KEY_EVERY s; latencies by key."""
    writing = asyncio.create_task(burst(writer, ids, rate, seconds))
    latencies: dict[str, list[float]] = {key: [] for key in keys}
    presses = 0
    while not writing.done():
        await asyncio.sleep(KEY_EVERY)
        key = keys[presses % len(keys)]
        latencies[key].append(await press(app, key))
        presses += 1
    return await writing, latencies


async def quiet(app: MeasuredApp, calm: float = 0.5, limit: float = 10.0) -> None:
    """Wait until no event has arrived for `calm` seconds (the feed has caught up)."""
    deadline = time.perf_counter() + limit
    seen, since = app.stats.events, time.perf_counter()
    while time.perf_counter() < deadline and time.perf_counter() - since < calm:
        await asyncio.sleep(0.05)
        if app.stats.events != seen:
            seen, since = app.stats.events, time.perf_counter()


async def run(rows: int, rate: float, seconds: float) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            db_path=Path(tmp) / "bench.db",
            t8star_api_key=None,
            qstash_token=None,
            supabase_url=None,
            supabase_service_role_key=None,
        )
        ids, fill_seconds = await fill(settings, rows)
        app = MeasuredApp(Runtime.from_settings(settings))
        async with app.run_test(size=SIZE), Runtime.from_settings(settings) as writer:
            started = time.perf_counter()
            while app.table.row_count < rows:
                await asyncio.sleep(0.01)
            load_seconds = time.perf_counter() - started
            app.flush_times.clear()
            frames, events_before = app.frames, app.stats.events
            sent, cursor = await under_load(app, writer, ids, rate, seconds, ["down", "up"])
            frames = app.frames - frames
            await quiet(app)
            received = app.stats.events - events_before
            flush_ms = sorted(t * 1000 for t in app.flush_times)
            _, views = await under_load(app, writer, ids, rate, seconds, ["2", "1", "s"])
    per_flush = received / max(1, len(flush_ms))
    moves = sorted(cursor["down"] + cursor["up"])
    switches = sorted(views["2"] + views["1"])
    return [
        ("rows in the table", f"{rows:,} (stored in {fill_seconds:.1f} s)"),
        ("first snapshot shown", f"{load_seconds * 1000:.0f} ms"),
        ("changes written / feed events", f"{sent:,} / {received:,} in {seconds:.0f} s"),
        ("flushes (frames with data)", f"{len(flush_ms):,} ({per_flush:.1f} changes each)"),
        ("frames drawn during the burst", f"{frames:,} ({frames / seconds:.0f}/s)"),
        ("apply time per flush", describe(flush_ms)),
        (f"key latency: cursor up/down ({len(moves)}x)", describe(moves)),
        (f"key latency: view 2 / 1 ({len(switches)}x)", describe(switches)),
        (f"key latency: sort s ({len(views['s'])}x)", describe(sorted(views["s"]))),
    ]


def describe(samples: list[float]) -> str:
    if not samples:
        return "-"
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    mean = statistics.fmean(samples)
    return f"mean {mean:.1f} ms, p95 {p95:.1f} ms, max {samples[-1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="changes per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the burst")
    args = parser.parse_args()
    table = asyncio.run(run(args.rows, args.rate, args.seconds))
    width = max(len(name) for name, _ in table)
    print(f"dashboard, {SIZE[0]}x{SIZE[1]} headless, SQLite store, {args.rate:.0f} changes/s")
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in table:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
