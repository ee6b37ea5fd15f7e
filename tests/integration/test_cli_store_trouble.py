"""The `videoq` command on a damaged or unwritable store file (issue #11): one line, an exit."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import Cli
from tests.waiting import TIMEOUT, wait_until_sync

PAGE = 4096


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.on(tmp_path / "videoq.db")


def _submit_and_settle(cli: Cli, count: int) -> None:
    """Submit `count` tasks, then fold the WAL into the main file so damage there is seen."""
    for n in range(count):
        cli.ok("submit", "--prompt", f"a fox {n}")
    with sqlite3.connect(cli.db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _one_error_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("videoq: error:")]
    assert len(lines) == 1, done.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_submit_to_a_corrupted_file_is_one_error_line(cli: Cli) -> None:
    _submit_and_settle(cli, 1)
    data = bytearray(cli.db_path.read_bytes())
    for offset in range(100, len(data), 7):
        data[offset] = 0xAB
    cli.db_path.write_bytes(bytes(data))
    _one_error_line(cli.run("submit", "--prompt", "another"), str(cli.db_path), "corrupt")
    _one_error_line(cli.run("list"), "corrupt")


def test_the_worker_ends_on_a_corrupted_task_table_without_a_traceback(cli: Cli) -> None:
    _submit_and_settle(cli, 3)
    with sqlite3.connect(cli.db_path) as db:
        [(root,)] = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'video_tasks'")
    data = bytearray(cli.db_path.read_bytes())
    start = (root - 1) * PAGE
    data[start + 8 : start + PAGE] = b"\xab" * (PAGE - 8)
    cli.db_path.write_bytes(bytes(data))
    done = cli.run("--no-ui", "--until-idle", timeout=TIMEOUT * 2)
    _one_error_line(done, str(cli.db_path), "corrupt")
    assert "crashed" not in done.stdout + done.stderr


@pytest.fixture
def immutable(cli: Cli) -> Iterator[list[str]]:
    """The store's files, to be made immutable by the test; made writable again after it."""
    files = [str(cli.db_path), f"{cli.db_path}-wal"]
    yield files
    subprocess.run(["chattr", "-i", *files], check=False)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is not installed")
def test_the_worker_exits_non_zero_naming_a_store_that_takes_no_writes(
    cli: Cli, immutable: list[str], tmp_path: Path
) -> None:
    cli.ok("submit", "--prompt", "a fox")
    log = tmp_path / "worker.log"
    worker = cli.start("--no-ui", log=log)
    try:
        wait_until_sync(lambda: "upstream:" in log.read_text(), "the worker to start")
        made = subprocess.run(["chattr", "+i", *immutable], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is refused here: {made.stderr.strip()}")
        code = worker.wait(TIMEOUT * 2)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert code == 1 and "Traceback" not in text
    assert "videoq: error: the task store takes no writes" in text, text
    assert "read-only" in text or "cannot be written" in text


def test_until_idle_runs_the_other_tasks_and_ends_past_an_unreadable_row(cli: Cli) -> None:
    good = cli.ok("submit", "--prompt", "a good task").strip()
    bad = cli.ok("submit", "--prompt", "a broken task").strip()
    with contextlib.closing(sqlite3.connect(cli.db_path)) as db, db:
        db.execute("UPDATE video_tasks SET status = 'lost' WHERE id = ?", (bad,))
    done = cli.run("--no-ui", "--until-idle", timeout=TIMEOUT * 2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    rows = {row["id"]: row for row in cli.json("list")}
    assert rows[good]["status"] in {"succeeded", "failed"} and rows[bad]["unreadable"] is True
