"""The `videoq` command end to end, as a user runs it (separate processes, one SQLite file)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from core.models import Task, TaskStatus, VideoRequest
from core.store.sqlite import SqliteStore
from tests.cli import Cli
from tests.waiting import wait_until_sync

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.on(tmp_path / "videoq.db")


@pytest.mark.slow
def test_twenty_submits_then_until_idle_end_terminal_and_list_agrees(cli: Cli) -> None:
    ids = [
        cli.ok("submit", "--prompt", f"scene {n}", "--duration", "10").strip() for n in range(20)
    ]
    assert all(row["status"] == "queued" for row in cli.json("list"))
    done = cli.run("--no-ui", "--until-idle", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["id"]: row for row in cli.json("list")}
    assert set(rows) == set(ids)
    assert {row["status"] for row in rows.values()} <= TERMINAL
    for row in rows.values():
        if row["status"] == "succeeded":
            assert row["video_url"] and row["progress"] == 100
        else:
            assert row["error_message"]
    assert "simulator" in done.stdout
    for task_id in ids:
        assert f"task {task_id}: queued -> running" in done.stdout


def test_bad_input_exits_non_zero_names_the_field_and_stores_nothing(cli: Cli) -> None:
    cases = {
        ("--duration", "25"): "--duration",
        ("--hd",): "--hd",
        ("--aspect-ratio", "4:3"): "--aspect-ratio",
        ("--model", "sora-3"): "--model",
        ("--image", "ftp://x/y.png"): "--image",
    }
    for extra, option in cases.items():
        done = cli.run("submit", "--prompt", "a fox", *extra)
        assert done.returncode != 0 and option in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    blank = cli.run("submit", "--prompt", "   ")
    assert blank.returncode != 0 and "--prompt" in blank.stderr
    assert cli.json("list") == []


def test_cancel_retry_and_show_say_why_when_they_do_not_apply(cli: Cli) -> None:
    task_id = cli.ok("submit", "--prompt", "a fox").strip()
    refused = cli.run("retry", task_id)
    assert refused.returncode != 0 and "only failed or cancelled" in refused.stderr
    assert "cancelled" in cli.ok("cancel", task_id[:8])
    again = cli.run("cancel", task_id)
    assert again.returncode != 0 and "already cancelled" in again.stderr
    assert "attempt 2" in cli.ok("retry", task_id)
    detail = cli.json("show", task_id)
    assert detail["task"]["attempt"] == 2 and detail["task"]["status"] == "queued"
    assert [e["actor"] for e in detail["history"] if e["kind"] == "action"] == ["cli", "cli"]
    missing = cli.run("show", "ffffffff")
    assert missing.returncode != 0 and "no task" in missing.stderr


async def _insert(path: Path, task: Task) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.insert(task)
    finally:
        await store.close()


def test_retry_of_a_task_that_used_its_submitters_own_key_asks_for_the_key(cli: Cli) -> None:
    failed = {"status": TaskStatus.FAILED, "own_key": True, "error_message": "refused"}
    task = Task.new(VideoRequest(prompt="a fox")).model_copy(update=failed)
    asyncio.run(_insert(cli.db_path, task))

    refused = cli.run("retry", task.id[:8])

    assert refused.returncode != 0, refused.stdout
    assert "ran with its submitter's own upstream key" in refused.stderr
    assert "X-Upstream-Api-Key" in refused.stderr and "Traceback" not in refused.stderr
    detail = cli.json("show", task.id)
    assert (detail["task"]["status"], detail["task"]["attempt"]) == ("failed", 1)


def test_list_json_prints_every_column_and_filters_by_status(cli: Cli) -> None:
    first = cli.ok("submit", "--prompt", "one").strip()
    cli.ok("submit", "--prompt", "two", "--model", "sora-2-pro", "--duration", "25")
    cli.ok("cancel", first)
    rows = cli.json("list")
    assert [row["prompt"] for row in rows] == ["two", "one"]
    assert {"id", "status", "attempt", "upstream_task_id", "version", "created_at"} <= set(rows[0])
    assert "upstream_key_ciphertext" not in rows[0]
    assert [row["id"] for row in cli.json("list", "--status", "cancelled")] == [first]
    bad = cli.run("list", "--status", "done")
    assert bad.returncode != 0 and "--status" in bad.stderr


def test_a_bad_setting_is_named(cli: Cli) -> None:
    cli.env["VIDEOQ_SIM_SPEED"] = "fast"
    done = cli.run("list")
    assert done.returncode != 0 and "VIDEOQ_SIM_SPEED" in done.stderr


def wait_for_line(log: Path, line: str, timeout: float = 30) -> None:
    """Wait until `line` is in the worker's log."""
    wait_until_sync(
        lambda: line in log.read_text(), f"{line!r} in the log", timeout, detail=log.read_text
    )


@pytest.mark.slow
def test_the_worker_picks_up_and_logs_what_other_processes_do_and_stops_on_sigterm(
    cli: Cli, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    cli.env["VIDEOQ_SIM_SPEED"] = "2"  # slow enough to cancel the task while it runs
    worker = cli.start("--no-ui", log=log)
    try:
        task_id = cli.ok("submit", "--prompt", "from another terminal").strip()
        wait_for_line(log, f"task {task_id}: queued -> running")
        cli.ok("cancel", task_id)
        wait_for_line(log, f"task {task_id}: running -> cancelled (by another process)")
        cli.ok("retry", task_id)
        wait_for_line(log, f"task {task_id}: queued again by another process (attempt 2)")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert "SIGTERM received" in log.read_text()
