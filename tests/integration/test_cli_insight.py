"""`videoq stats`, and the overdue and stalled marks of `list` and `show`, as a user runs them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from msgspec.structs import replace

from core.models import Task, TaskStatus, VideoRequest, utcnow
from core.store.sqlite import SqliteStore
from tests.cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    # The simulator's clock at its real speed: the rows' times mean what they say.
    return Cli.on(tmp_path / "videoq.db", VIDEOQ_SIM_SPEED="1")


def made(prompt: str, **fields: object) -> Task:
    return replace(Task.new(VideoRequest(prompt=prompt)), **fields)


async def stored(cli: Cli, *tasks: Task) -> None:
    store = SqliteStore(cli.db_path)
    await store.open()
    try:
        for task in tasks:
            await store.insert(task)
    finally:
        await store.close()


def running(prompt: str, minutes: float, **fields: object) -> Task:
    return made(
        prompt,
        status=TaskStatus.RUNNING,
        started_at=utcnow() - timedelta(minutes=minutes),
        **fields,
    )


async def test_list_and_show_mark_overdue_and_stalled_running_tasks(cli: Cli) -> None:
    late = running("late fox", minutes=5)  # a 10 s video runs 1-3 minutes
    stuck = running("stuck fox", minutes=1, progress=40, polls=6, polls_without_progress=4)
    fine = running("fine fox", minutes=1, progress=40, polls=6, polls_without_progress=1)
    await stored(cli, late, stuck, fine)

    rows = {row["prompt"]: row for row in cli.json("list")}
    assert (rows["late fox"]["overdue"], rows["late fox"]["stalled"]) == (True, False)
    assert (rows["stuck fox"]["overdue"], rows["stuck fox"]["stalled"]) == (False, True)
    assert (rows["fine fox"]["overdue"], rows["fine fox"]["stalled"]) == (False, False)

    table = {line.split()[0]: line for line in cli.ok("list").splitlines()[1:]}
    assert "running overdue " in table[late.id[:8]]
    assert "running stalled " in table[stuck.id[:8]]
    assert "overdue" not in table[fine.id[:8]] and "stalled" not in table[fine.id[:8]]

    [timing] = [line for line in cli.ok("show", late.id[:8]).splitlines() if "timing:" in line]
    assert timing.split(": ", 1)[1].startswith("expected 1m–3m; upstream for 5m")
    assert timing.endswith(", overdue")
    assert cli.json("show", late.id[:8])["task"]["overdue"] is True


async def test_stats_groups_failures_by_reason_and_sums_up_each_kind_of_job(cli: Cli) -> None:
    now = utcnow()

    def ended(status: TaskStatus, minutes: float, **fields: object) -> Task:
        done = now - timedelta(minutes=minutes)
        return made(
            "a fox",
            status=status,
            queued_at=done - timedelta(seconds=90),
            completed_at=done,
            updated_at=done,
            **fields,
        )

    await stored(
        cli,
        ended(TaskStatus.FAILED, 10, error_message="upstream overloaded (code 503), try later"),
        ended(TaskStatus.FAILED, 20, error_message="upstream overloaded (code 429), try later"),
        ended(TaskStatus.FAILED, 30, error_message="视频内容审核未通过"),
        ended(TaskStatus.SUCCEEDED, 5, polls=3),
        ended(TaskStatus.FAILED, 60 * 3, error_message="too old for the window"),
    )

    report = cli.json("stats", "--since", "2h")
    reasons = {group["reason"]: group["count"] for group in report["failures"]}
    assert reasons == {"upstream overloaded (code #), try later": 2, "视频内容审核未通过": 1}
    [kind] = report["models"]
    assert (kind["model"], kind["duration"], kind["finished"], kind["succeeded"]) == (
        "sora-2",
        10,
        4,
        1,
    )
    assert kind["success_rate"] == 0.25 and kind["p50_seconds"] == 90.0

    text = cli.ok("stats", "--since", "2h")
    assert "upstream overloaded (code #), try later" in text
    assert "视频内容审核未通过" in text and "too old" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_stats_refuses_a_window_it_cannot_read(cli: Cli) -> None:
    bad = cli.run("stats", "--since", "yesterday")
    assert bad.returncode == 2 and "is not an age such as 30m" in bad.stderr
