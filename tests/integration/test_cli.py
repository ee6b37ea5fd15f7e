"""The `videoq` command end to end, as a user runs it (separate processes, one SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from msgspec.structs import replace

from core.models import Task, TaskStatus, VideoRequest
from core.runtime import Runtime
from core.store.sqlite import SqliteStore
from tests.cli import Cli
from tests.dashboard_helpers import FAILED, force, make_settings, seed
from tests.http_support import free_port
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
    counts = {s: sum(r["status"] == s for r in rows.values()) for s in ("succeeded", "failed")}
    summary = f"idle: {counts['succeeded']} succeeded, {counts['failed']} failed, 0 cancelled"
    assert done.stdout.rstrip().endswith(summary)


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
    task = replace(Task.new(VideoRequest(prompt="a fox")), **failed)
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


@pytest.mark.parametrize(
    "command", [["list"], ["--no-ui", "--until-idle"], ["serve", "--port", "1"]]
)
def test_the_commands_run_on_the_event_loop_the_setting_names(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    # A machine without uvloop: a package of that name that cannot be imported comes first.
    (tmp_path / "hidden" / "uvloop").mkdir(parents=True)
    (tmp_path / "hidden" / "uvloop" / "__init__.py").write_text("raise ImportError('not here')")
    cli.env["PYTHONPATH"] = str(tmp_path / "hidden")
    cli.env["VIDEOQ_EVENT_LOOP"] = "uvloop"
    refused = cli.run(*command)
    assert refused.returncode == 1
    assert "VIDEOQ_EVENT_LOOP=uvloop, but uvloop is not installed" in refused.stderr
    assert not cli.db_path.exists()  # nothing ran
    cli.env["VIDEOQ_EVENT_LOOP"] = "asyncio"
    if command == ["list"]:
        assert cli.run(*command).returncode == 0


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


def test_validation_messages_are_plain_words(cli: Cli) -> None:
    images = [arg for n in range(5) for arg in ("--image", f"https://x.example/{n}.png")]
    many = cli.run("submit", "--prompt", "a fox", *images)
    assert "invalid --image: at most 4 images" in many.stderr
    long = cli.run("submit", "--prompt", "x" * 4001)
    assert "invalid --prompt: is longer than 4,000 characters" in long.stderr
    for done in (many, long):
        assert done.returncode == 1 and "should have" not in done.stderr
    assert cli.json("list") == []


def test_json_prints_non_ascii_as_it_is(cli: Cli) -> None:
    out = cli.ok("submit", "--prompt", "一只猫在雨中", "--json")
    assert '"prompt": "一只猫在雨中"' in out and "\\u" not in out
    assert "一只猫在雨中" in cli.ok("list", "--json")


def test_list_refuses_limit_zero_and_says_when_rows_were_cut(cli: Cli) -> None:
    zero = cli.run("list", "--limit", "0")
    assert zero.returncode == 2 and "--limit: must be from 1 to 1000, not 0" in zero.stderr
    for n in range(3):
        cli.ok("submit", "--prompt", f"scene {n}")
    cut = cli.ok("list", "--limit", "2")
    assert len(cut.splitlines()) == 4  # header, two rows, the note
    assert cut.splitlines()[-1] == "showing the newest 2; more tasks match (raise --limit)"
    assert "more tasks" not in cli.ok("list", "--limit", "3")
    assert len(cli.json("list", "--limit", "2")) == 2


def seeded(cli: Cli, count: int, failed: int = 0) -> list[str]:
    """Tasks stored in-process (fast), the first `failed` of them failed, newest last."""
    settings = make_settings(cli.db_path)

    async def go() -> list[str]:
        tasks = await seed(settings, count)
        async with Runtime.from_settings(settings) as runtime:
            for task in tasks[:failed]:
                await force(runtime, task, FAILED)
        return [task.id for task in tasks]

    return asyncio.run(go())


def test_list_fits_80_columns_with_the_prompt_beside_the_error(cli: Cli) -> None:
    seeded(cli, 3, failed=1)
    cli.env["COLUMNS"] = "80"
    lines = cli.ok("list").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[-2:] == ["PROMPT", "ERROR"]
    failed = next(line for line in lines if " failed " in line)
    assert "A red fox" in failed and "upstream refused" in failed
    cli.env["COLUMNS"] = "160"
    assert "MODEL" in cli.ok("list").splitlines()[0]


def test_an_ambiguous_prefix_lists_the_candidates(cli: Cli) -> None:
    ids = seeded(cli, 17)  # 17 ids, 16 hex digits: two share a first character
    first = defaultdict(list)
    for task_id in ids:
        first[task_id[0]].append(task_id)
    prefix, candidates = next((c, group) for c, group in first.items() if len(group) > 1)
    done = cli.run("show", prefix)
    assert done.returncode == 1
    assert f"id prefix {prefix!r} matches several tasks; give more characters:" in done.stderr
    assert all(task_id in done.stderr for task_id in candidates[:5])


def test_cancel_and_retry_take_several_ids_and_report_each(cli: Cli) -> None:
    ids = seeded(cli, 3)
    done = cli.run("cancel", ids[0][:8], ids[1][:8], "ffffffff")
    assert done.returncode == 1
    assert f"task {ids[0]} cancelled" in done.stdout and f"task {ids[1]} cancelled" in done.stdout
    assert "no task with id 'ffffffff'" in done.stderr
    again = cli.ok("retry", ids[0][:8], ids[1][:8])
    assert again.count("queued again (attempt 2)") == 2
    bare = cli.run("retry")
    assert bare.returncode == 1 and "--failed for every failed one" in bare.stderr


def test_retry_failed_counts_first_asks_or_needs_yes_and_filters(cli: Cli) -> None:
    ids = seeded(cli, 4, failed=3)  # demo tasks 0-2 failed: sora-2, sora-2, sora-2-pro
    asked = cli.run("retry", "--failed")  # no terminal on stdin: refuses to ask
    assert asked.returncode == 1 and "3 failed tasks to retry" in asked.stdout
    assert "add --yes to retry them" in asked.stderr
    pro = cli.ok("retry", "--failed", "--model", "sora-2-pro", "--yes")
    assert "1 failed task to retry" in pro and f"task {ids[2]} queued again (attempt 2)" in pro
    assert "0 failed tasks" in cli.ok("retry", "--failed", "--since", "0s", "--yes")
    rest = cli.ok("retry", "--failed", "--since", "1h", "--yes")
    assert "2 failed tasks to retry" in rest and rest.count("attempt 2") == 2
    bad = cli.run("retry", "--failed", "--since", "soon")
    assert bad.returncode == 2 and "is not an age such as 30m" in bad.stderr
    stray = cli.run("retry", ids[0], "--yes")
    assert stray.returncode == 1 and "go with --failed" in stray.stderr


def test_prune_counts_first_asks_or_needs_yes_and_keeps_unfinished_tasks(cli: Cli) -> None:
    ids = seeded(cli, 4, failed=2)
    assert "to delete: 0 finished tasks" in cli.ok("prune", "--older-than", "1d", "--yes")
    asked = cli.run("prune", "--older-than", "0s")  # no terminal on stdin: refuses to ask
    assert asked.returncode == 1 and "add --yes to delete them" in asked.stderr
    assert "to delete: 2 finished tasks" in asked.stdout
    assert "(0 succeeded, 2 failed, 0 cancelled)" in asked.stdout
    assert "to delete: 0 finished tasks" in cli.ok("prune", "--older-than", "0s", "--status",
                                                   "succeeded,cancelled", "--yes")  # fmt: skip
    assert len(cli.json("list")) == 4
    done = cli.ok("prune", "--older-than", "0s", "--yes")
    assert "deleted: 2 finished tasks" in done and "with their history and images" in done
    assert sorted(row["id"] for row in cli.json("list")) == sorted(ids[2:])
    assert "no task with id" in cli.run("show", ids[0]).stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--older-than", "soon", "--older-than: 'soon' is not an age such as 30m, 1h or 2d"),
        ("--older-than", "9999999d", "--older-than: '9999999d' reaches back before the year 1"),
        ("--status", "queued", "--status: 'queued' is not a finished status"),
        ("--status", "failed,", "--status: '' is not a finished status"),
    ],
)
def test_prune_refuses_bad_input_in_one_line_and_deletes_nothing(
    cli: Cli, option: str, value: str, message: str
) -> None:
    seeded(cli, 2, failed=2)
    args = {"--older-than": "0s", "--status": "failed"} | {option: value}
    done = cli.run("prune", *(item for pair in args.items() for item in pair), "--yes")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"videoq: error: {message}") and done.stderr.count("\n") == 1
    assert len(cli.json("list")) == 2


def test_until_idle_needs_no_ui_and_failures_are_warnings(cli: Cli) -> None:
    refused = cli.run("--until-idle")
    assert refused.returncode == 2 and "--until-idle works only with --no-ui" in refused.stderr
    task_id = cli.ok("submit", "--prompt", "a fox").strip()
    cli.env["VIDEOQ_SIM_FAILURE_RATE"] = "1"
    done = cli.run("--no-ui", "--until-idle")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"WARNING core.worker: task {task_id}: running -> failed" in done.stdout
    assert done.stdout.rstrip().endswith("idle: 0 succeeded, 1 failed, 0 cancelled")


def test_serve_says_where_it_listens_and_why_the_worker_url_differs(
    cli: Cli, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    cli.env["VIDEOQ_PUBLIC_URL"] = "https://videoq.example.org"
    port = free_port()
    serve = cli.start("serve", "--port", str(port), log=log)
    try:
        wait_for_line(log, "worker endpoint")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    text = log.read_text()
    assert f"listening on http://127.0.0.1:{port}" in text
    assert (
        "worker endpoint https://videoq.example.org/api/v1/internal/video-worker, as "
        "VIDEOQ_PUBLIC_URL https://videoq.example.org says" in text
    )


def test_a_store_path_that_cannot_be_opened_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "hostname"
    blocker.write_text("not a folder\n")
    done = Cli.on(blocker / "v.db").run("list")
    assert done.returncode != 0
    assert done.stderr.startswith("videoq: error:") and done.stderr.count("\n") == 1, done.stderr
    assert str(blocker) in done.stderr and "is a file" in done.stderr


def test_list_shows_a_row_that_cannot_be_decoded_as_unreadable(cli: Cli) -> None:
    good = cli.ok("submit", "--prompt", "a good task").strip()
    bad = cli.ok("submit", "--prompt", "a broken task").strip()
    with contextlib.closing(sqlite3.connect(cli.db_path)) as db, db:
        db.execute("UPDATE video_tasks SET status = 'lost' WHERE id = ?", (bad,))
    text = cli.ok("list")
    assert good[:8] in text and "a good task" in text
    assert f"{bad}  unreadable  status: unknown value 'lost'" in text
    listed = cli.json("list")
    assert [entry["id"] for entry in listed] == [good, bad]
    assert listed[1]["unreadable"] is True and listed[1]["why"].startswith("status: ")
    assert set(listed[1]) == {"id", "unreadable", "why"}
