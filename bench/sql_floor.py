"""What the SQL of one W poll step costs by itself: the floor under the engine's CPU per step.

    uv run python bench/sql_floor.py [--tasks 2000] [--group 6]

Runs workload W once to get a file shaped like a busy one, then times, on one connection set
up as the engine's writer is (WAL, synchronous=NORMAL, 16 MiB cache), each statement a poll step
makes, `--group` statements to a transaction as the group commit batches them. No Python of the
engine runs: what is printed is SQLite plus the sqlite3 module's call, per statement, in
microseconds of this thread's CPU, and what one poll step's statements add up to.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine  # noqa: E402

from core.sqlite_file import connect  # noqa: E402
from core.store.sqlite_db import _INSERT_EVENT, _LOG, GET  # noqa: E402

STAMP = "2026-12-02T05:00:00.000000+00:00"
CLAIM = (
    "UPDATE video_tasks SET step_lease_until = ?, version = version + 1, updated_at = ?"
    " WHERE id = ? AND status IN ('succeeded') AND attempt = 1"
    " AND (step_lease_until IS NULL OR step_lease_until <= ?)"
)
POLLED = (
    "UPDATE video_tasks SET upstream_status = 'IN_PROGRESS', last_polled_at = ?, progress = 50,"
    " polls_without_progress = 0, polls = polls + 1, next_poll_at = ?, step_lease_until = NULL,"
    " message_id = ?, version = version + 1, updated_at = ? WHERE id = ?"
)
MESSAGE = (
    "INSERT INTO queue_messages (id, dedup_id, body, deliver_at, published_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
RETURNING = " RETURNING " + GET.removeprefix("SELECT ").split(" FROM ")[0]


def statements(db: sqlite3.Connection) -> list[tuple[str, float, Callable[[str, int], Any]]]:
    """(what, times per poll step, run it for one task id and a counter)."""
    event = ["", "poll", 1, STAMP, None, None, "worker", "IN_PROGRESS", 50, 200, 1.5, None]

    def claim(task_id: str, _: int) -> Any:
        return db.execute(CLAIM + RETURNING, (STAMP, STAMP, task_id, STAMP)).fetchone()

    def polled(task_id: str, n: int) -> Any:
        params = (STAMP, STAMP, f"msg_{n:030d}", STAMP, task_id)
        return db.execute(POLLED + RETURNING, params).fetchone()

    def history(task_id: str, _: int) -> Any:
        return db.execute(_INSERT_EVENT, [task_id, *event[1:]])

    def change(task_id: str, _: int) -> Any:
        return db.execute(_LOG, (task_id, "UPDATE", "bench", time.time()))

    def message(task_id: str, n: int) -> Any:
        row = (f"msg_{n:030d}", f"{task_id}-1-poll-{n}", b"{}", time.time(), time.time())
        return db.execute(MESSAGE, row)

    def settle(_: str, n: int) -> Any:
        return db.execute("DELETE FROM queue_messages WHERE id = ?", (f"msg_{n:030d}",))

    def read(task_id: str, _: int) -> Any:
        return db.execute(GET, (task_id,)).fetchone()

    return [
        ("claim: UPDATE … RETURNING the row", 1, claim),
        ("next poll: UPDATE … RETURNING the row", 1, polled),
        ("history row: INSERT INTO task_events", 1, history),
        ("change log: INSERT INTO change_log", 2, change),
        ("next message: INSERT INTO queue_messages", 1, message),
        ("settle: DELETE FROM queue_messages", 1, settle),
        ("(not on the path) get: SELECT the row by id", 0, read),
    ]


def per_statement(
    db: sqlite3.Connection, run: Callable[[str, int], Any], ids: list[str], group: int, n: int
) -> tuple[float, float]:
    """(µs of CPU per statement, µs of CPU per statement's share of the COMMIT)."""
    counter = itertools.count()
    spent = committing = 0.0
    for start in range(0, n, group):
        db.execute("BEGIN IMMEDIATE")
        began = time.thread_time()
        for task_id in ids[start : start + group]:
            run(task_id, next(counter))
        ran = time.thread_time()
        db.execute("COMMIT")
        spent += ran - began
        committing += time.thread_time() - ran
    return spent / n * 1e6, committing / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks of the W run (2000)")
    parser.add_argument("--group", type=int, default=6, help="statements per transaction (6)")
    args = parser.parse_args()
    if args.tasks < 1 or args.group < 1:
        parser.error("--tasks and --group must be 1 or more")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.db"
        asyncio.run(engine.workload_w(path, tasks=args.tasks))
        db = connect(path, 5.0)
        try:
            ids = [row[0] for row in db.execute("SELECT id FROM video_tasks")]
            rows = [
                (what, times, *per_statement(db, run, ids, args.group, len(ids)))
                for what, times, run in statements(db)
            ]
        finally:
            db.close()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite "
          f"{sqlite3.sqlite_version}; {len(ids):,} tasks, {args.group} statements a "
          "transaction")  # fmt: skip
    print(f"{'statement':<48}{'per step':>9}{'µs each':>9}{'+ commit':>10}")
    print("-" * 76)
    total = 0.0
    for what, times, each, commit in rows:
        total += times * (each + commit)
        print(f"{what:<48}{times:>9g}{each:>9.1f}{commit:>10.1f}")
    print("-" * 76)
    print(f"{'one poll step, SQL only (µs of CPU)':<48}{total:>28.0f}")


if __name__ == "__main__":
    main()
