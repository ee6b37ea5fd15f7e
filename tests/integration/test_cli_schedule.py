"""`videoq schedule` against the QStash fake: create, update in place, show, delete, refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_TOKEN, FakeQStash

PUBLIC_URL = "https://videoq.example.com"
RECONCILE_URL = PUBLIC_URL + "/api/v1/internal/reconcile"


@pytest.fixture
def cli(tmp_path: Path, fake_qstash: FakeQStash) -> Cli:
    return Cli.on(
        tmp_path / "videoq.db",
        QSTASH_TOKEN=DEV_TOKEN,
        QSTASH_URL=fake_qstash.url,
        QSTASH_CURRENT_SIGNING_KEY=DEV_CURRENT_SIGNING_KEY,
        VIDEOQ_PUBLIC_URL=PUBLIC_URL,
    )


def crons(fake: FakeQStash) -> dict[str, str]:
    return {s.destination: s.cron.expression for s in list(fake.schedules.by_id.values())}


def test_schedule_creates_one_schedule_every_minute_by_default(
    cli: Cli, fake_qstash: FakeQStash
) -> None:
    out = cli.ok("schedule")
    assert "created" in out and "* * * * *" in out and RECONCILE_URL in out
    assert "1,440 QStash messages a day" in out
    assert crons(fake_qstash) == {RECONCILE_URL: "* * * * *"}
    [schedule] = fake_qstash.schedules.by_id.values()
    assert schedule.retries == 0


def test_schedule_again_updates_the_same_schedule_in_place(
    cli: Cli, fake_qstash: FakeQStash
) -> None:
    cli.ok("schedule")
    [first] = fake_qstash.schedules.by_id
    assert "unchanged" in cli.ok("schedule", "--every", "1m")
    out = cli.ok("schedule", "--every", "5m")
    assert f"schedule {first} updated" in out and "288 QStash messages a day" in out
    assert list(fake_qstash.schedules.by_id) == [first]
    assert crons(fake_qstash) == {RECONCILE_URL: "*/5 * * * *"}
    assert cli.ok("schedule", "--every", "2h").count("0 */2 * * *") == 1


def test_show_prints_it_and_delete_removes_it(cli: Cli, fake_qstash: FakeQStash) -> None:
    missing = cli.run("schedule", "--show")
    assert missing.returncode == 1 and "no QStash schedule calls" in missing.stdout
    cli.ok("schedule", "--every", "10m")
    [schedule_id] = fake_qstash.schedules.by_id
    shown = cli.ok("schedule", "--show")
    assert f"schedule {schedule_id} (active)" in shown and "*/10 * * * *" in shown
    assert RECONCILE_URL in shown and "next run  20" in shown
    assert f"schedule {schedule_id} deleted" in cli.ok("schedule", "--delete")
    assert crons(fake_qstash) == {}
    assert "nothing to delete" in cli.ok("schedule", "--delete")


def test_schedules_of_other_destinations_are_left_alone(cli: Cli, fake_qstash: FakeQStash) -> None:
    other = Cli.on(cli.db_path, **{**cli.env, "VIDEOQ_PUBLIC_URL": "https://other.example.com"})
    other.ok("schedule", "--every", "30m")
    cli.ok("schedule")
    cli.ok("schedule", "--delete")
    assert list(crons(fake_qstash).values()) == ["*/30 * * * *"]


@pytest.mark.parametrize(
    ("settings", "args", "words"),
    [
        ({"QSTASH_TOKEN": ""}, ("schedule",), "needs QSTASH_TOKEN"),
        (
            {"VIDEOQ_PUBLIC_URL": "http://127.0.0.1:8000", "QSTASH_URL": "https://qstash.io"},
            ("schedule",),
            "not reachable from QStash",
        ),  # fmt: skip
        ({}, ("schedule", "--every", "7m"), "--every must be minutes that divide an hour"),
        ({}, ("schedule", "--every", "90s"), "not '90s'"),
        ({}, ("schedule", "--every", "5m", "--show"), "--every goes with neither"),
        ({"QSTASH_TOKEN": "wrong-token"}, ("schedule",), "check QSTASH_TOKEN"),
    ],
    ids=["no-token", "private-url", "uneven", "seconds", "every-and-show", "bad-token"],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    cli: Cli, fake_qstash: FakeQStash, settings: dict[str, str], args: tuple[str, ...], words: str
) -> None:
    env = {k: v for k, v in {**cli.env, **settings}.items() if v != ""}
    done = Cli(cli.db_path, env).run(*args)
    assert done.returncode == 1
    assert words in done.stderr and "Traceback" not in done.stderr
    assert DEV_TOKEN not in done.stderr
    assert crons(fake_qstash) == {}
