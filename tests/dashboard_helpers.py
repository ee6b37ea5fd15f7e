"""Shared by the dashboard tests: settings, seeding through the core, waiting on conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from core.config import Settings
from core.demo import seed_demo
from core.models import Task, TaskStatus
from core.runtime import Runtime
from core.store import Expect
from tests.waiting import TIMEOUT, Condition, wait_until
from tui.app import VideoqApp

# The terminal sizes the dashboard must work at: the smallest usual one and a roomy one.
SIZES = [(80, 24), (160, 45)]


def make_settings(db_path: Path, **overrides: Any) -> Settings:
    """Embedded settings that ignore the developer's environment and .env."""
    values: dict[str, Any] = {
        "db_path": db_path,
        "t8star_api_key": None,
        "qstash_token": None,
        "supabase_url": None,
        "supabase_service_role_key": None,
        "sim_speedup": 2000.0,
        "sim_failure_rate": 0.0,
        "poll_min_interval": 3.0,
        "reconcile_interval": 60.0,
        # At 2000x the default 45-minute deadline is 1.35 real seconds, less than one late poll
        # on a busy machine; no dashboard test is about the deadline.
        "task_deadline": 1_000_000.0,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


class RecordingApp(VideoqApp):
    """The real app, remembering what it told the operator."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        kwargs.setdefault("start_worker", False)
        super().__init__(runtime, **kwargs)
        self.notes: list[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append(message)
        super().notify(message, **kwargs)


def open_app(settings: Settings, **kwargs: Any) -> RecordingApp:
    """The recording app over a fresh Runtime for `settings`."""
    return RecordingApp(Runtime.from_settings(settings), **kwargs)


async def wait_for(
    pilot: Pilot[Any],
    condition: Condition,
    what: str,
    timeout: float = TIMEOUT,
) -> None:
    """Let the app run until `condition` holds; fail with `what` after `timeout` seconds."""
    # pilot.pause, unlike a sleep, also lets the app's timers and screen catch up.
    await wait_until(condition, what, timeout, interval=0.02, pause=pilot.pause)


async def started(pilot: Pilot[Any], app: VideoqApp) -> None:
    """Wait until the app has opened its store and shown its first snapshot."""
    await wait_for(pilot, lambda: app.stats.syncs >= 1, "the first snapshot")


async def seed(settings: Settings, count: int) -> list[Task]:
    """Submit `count` demo tasks through the core, as another process would."""
    async with Runtime.from_settings(settings) as runtime:
        return await seed_demo(runtime.service, count, actor="test")


async def force(runtime: Runtime, task: Task, *steps: dict[str, Any]) -> Task:
    """Walk a queued task through legal transitions by hand (the worker is not running)."""
    current = task
    for changes in steps:
        expect = Expect(frozenset({current.status}), current.attempt)
        updated = await runtime.store.update(current.id, expect, changes)
        assert updated is not None, f"could not apply {changes} to {current.status}"
        current = updated
    return current


RUNNING = {"status": TaskStatus.RUNNING, "progress": 40, "upstream_task_id": "up-1"}
SUCCEEDED = {
    "status": TaskStatus.SUCCEEDED,
    "progress": 100,
    "video_url": "https://v.example/1.mp4",
}
FAILED = {"status": TaskStatus.FAILED, "error_message": "upstream refused: content policy"}
