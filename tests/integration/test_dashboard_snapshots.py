"""Snapshot tests (pytest-textual-snapshot) of the main screen, the detail and the new-task form.

Everything that moves is frozen: the app's clock, the rows' timestamps and ids, the feed's last
event and the store's description (whose real path changes from run to run).
Update with `uv run pytest tests/integration/test_dashboard_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.color import ColorSystem
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import LineFilter, Monochrome
from textual.pilot import Pilot
from textual.widgets import Input

from core.config import Settings
from core.models import Task, TaskEvent, TaskStatus
from core.runtime import Runtime
from core.store import FeedState, FeedStatus, TaskStore
from tests.dashboard_helpers import RecordingApp, make_settings, wait_for

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
SIZE = (160, 36)

ROWS: list[dict[str, Any]] = [
    # Upstream for 100 s at the simulator's 20x: within a 10 s video's 1-3 minutes.
    {"status": TaskStatus.RUNNING, "progress": 62, "started_at": NOW - timedelta(seconds=5)},
    {"status": TaskStatus.QUEUED, "model": "sora-2-pro", "duration": 25},
    {"status": TaskStatus.SUCCEEDED, "progress": 100, "video_url": "https://cdn.example/v/3.mp4"},
    {"status": TaskStatus.FAILED, "progress": 35, "error_message": "upstream: content policy"},
    {"status": TaskStatus.CANCELLED, "progress": 10, "model": "sora-2-pro", "hd": True},
    # Upstream for 20 hours at 20x: overdue.
    {"status": TaskStatus.RUNNING, "progress": 5, "aspect_ratio": "9:16", "duration": 15},
]
PROMPTS = (
    "A red fox trotting through fresh snow at dawn, tracking shot",
    "Timelapse of a city skyline as storm clouds roll in, cinematic",
    "A paper boat drifting down a rain-soaked street, macro lens",
    "An astronaut tending a tomato plant inside a space station",
    "Waves crashing on black volcanic sand, slow motion, golden hour",
    "一只猫在雨中的东京街头散步，电影感",
)


def fixed_task(n: int, fields: dict[str, Any]) -> Task:
    created = NOW - timedelta(minutes=10 * (n + 1))
    values: dict[str, Any] = {
        "id": f"{n + 1:x}{n + 1:x}f2a1b2-0000-4000-8000-{n:012d}",
        "provider": "t8star",
        "model": "sora-2",
        "prompt": PROMPTS[n],
        "aspect_ratio": "16:9",
        "duration": 10,
        "created_at": created,
        "queued_at": created,
        "updated_at": created + timedelta(minutes=3),
    }
    if fields["status"] is not TaskStatus.QUEUED:
        values |= {"started_at": created + timedelta(seconds=4), "upstream_task_id": f"sora-{n}"}
    if fields["status"].terminal:
        values["completed_at"] = created + timedelta(minutes=3)
    return Task(**(values | fields))


async def prepare(settings: Settings) -> None:
    async with Runtime.from_settings(settings) as runtime:
        for n, fields in enumerate(ROWS):
            task = fixed_task(n, fields)
            event = TaskEvent(
                task_id=task.id,
                kind="transition",
                attempt=1,
                at=task.created_at,
                to_status=TaskStatus.QUEUED,
                actor="demo",
            )
            await runtime.store.insert(task, event)
            if task.started_at:
                await runtime.store.add_event(
                    TaskEvent(
                        task_id=task.id,
                        kind="submit",
                        attempt=1,
                        at=task.started_at,
                        from_status=TaskStatus.QUEUED,
                        to_status=TaskStatus.RUNNING,
                        detail="upstream accepted the job",
                    )
                )


class FrozenStore:
    """The real store, with the header's moving parts (path, last event time) held still."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.feed = FeedStatus(FeedState.LIVE, NOW - timedelta(seconds=2))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def describe(self) -> str:
        return "sqlite: ~/.local/share/videoq/videoq.db"


def frozen_app(tmp_path: Path) -> RecordingApp:
    settings = make_settings(tmp_path / "snap.db", sim_speedup=20.0)
    asyncio.run(prepare(settings))
    return app_over(settings)


def app_over(settings: Settings) -> RecordingApp:
    """The app over prepared rows, with the clock and the header's moving parts frozen."""
    runtime = Runtime.from_settings(settings)
    runtime.store = FrozenStore(runtime.store)  # type: ignore[assignment]
    return RecordingApp(runtime, clock=lambda: NOW)


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, RecordingApp)
    await wait_for(pilot, lambda: app.table.row_count == len(ROWS), "the rows")


@pytest.fixture
def app(tmp_path: Path) -> RecordingApp:
    return frozen_app(tmp_path)


def test_main_screen(snap_compare: Any, app: RecordingApp) -> None:
    async def select_two(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("down", "space", "space", "up")

    assert snap_compare(app, terminal_size=SIZE, run_before=select_two)


def test_detail_screen(snap_compare: Any, app: RecordingApp) -> None:
    async def open_detail(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("down", "down", "enter")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: getattr(screen, "history", None) is not None, "history")

    assert snap_compare(app, terminal_size=SIZE, run_before=open_detail)


def test_new_task_form_with_a_field_error(snap_compare: Any, app: RecordingApp) -> None:
    async def bad_request(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("n", *"a cat", "tab", "tab", "enter", "down", "down", "enter", "ctrl+s")
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=bad_request)


class SixteenColours(LineFilter):
    """What a TERM=xterm terminal shows: every colour folded into the 16 standard ones."""

    def apply(self, segments: list[Segment], background: Any) -> list[Segment]:
        return [Segment(text, _standard(style), control) for text, style, control in segments]


def _standard(style: Style | None) -> Style | None:
    if style is None:
        return None
    fold = lambda c: None if c is None else c.downgrade(ColorSystem.STANDARD)  # noqa: E731
    return style + Style.from_color(fold(style.color), fold(style.bgcolor))


TERMINALS: dict[str, list[LineFilter]] = {
    "256": [],
    "16": [SixteenColours()],
    "no_color": [Monochrome()],
}


async def cursor_on_third_row(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("down", "space")  # selects the second row; the cursor moves to the third


@pytest.mark.parametrize("terminal", TERMINALS)
def test_the_cursor_row_stands_out_in_every_terminal(
    snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: str
) -> None:
    if terminal == "no_color":
        monkeypatch.setenv("NO_COLOR", "1")  # read when the app is built
    app = frozen_app(tmp_path)
    app._filters.extend(TERMINALS[terminal] if terminal == "16" else [])
    assert snap_compare(app, terminal_size=(80, 24), run_before=cursor_on_third_row)


@pytest.mark.parametrize("terminal", TERMINALS)
async def test_only_the_cursor_row_is_reversed_and_marked(tmp_path: Path, terminal: str) -> None:
    settings = make_settings(tmp_path / "snap.db")
    await prepare(settings)
    app = app_over(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await cursor_on_third_row(pilot)
        rows = []
        for y in range(1, len(ROWS) + 1):
            segments = list(app.table.render_line(y))
            for line_filter in TERMINALS[terminal]:
                segments = line_filter.apply(segments, Color(0, 0, 0))
            rows.append(segments)
    texts = ["".join(s.text for s in row) for row in rows]
    reversed_rows = [
        i for i, row in enumerate(rows) if all(s.style and s.style.reverse for s in row[:-1])
    ]
    assert reversed_rows == [2]
    assert [i for i, text in enumerate(texts) if "▶" in text] == [2]
    assert [i for i, text in enumerate(texts) if "●" in text] == [1]  # selected, not the cursor
    assert not any(s.style and s.style.reverse for row in rows[:2] + rows[3:] for s in row)
