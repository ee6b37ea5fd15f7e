"""The dashboard in Simplified Chinese: snapshots of the table, the help and the detail screen at
80x24 (the rows of test_dashboard_snapshots, a Chinese prompt among them), and what the header,
the footer and a refusal say."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.dashboard_helpers import RecordingApp
from tests.integration.test_dashboard_snapshots import ROWS, frozen_app, loaded
from tui.i18n import ZH_CN, using
from tui.screens.help import HelpScreen

SMALL = (80, 24)
WIDE = (160, 48)


@pytest.fixture(autouse=True)
def chinese() -> Iterator[None]:
    with using(ZH_CN):
        yield


@pytest.fixture
def app(tmp_path: Path) -> RecordingApp:
    return frozen_app(tmp_path)


def test_table_in_chinese(snap_compare: Any, app: RecordingApp) -> None:
    async def select_two(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("down", "space", "space", "up")

    assert snap_compare(app, terminal_size=SMALL, run_before=select_two)


def test_help_screen_in_chinese(snap_compare: Any, app: RecordingApp) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SMALL, run_before=open_help)


def test_detail_screen_in_chinese(snap_compare: Any, app: RecordingApp) -> None:
    async def open_detail(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("down", "down", "down", "enter")  # the failed task
        screen = pilot.app.screen
        await pilot.wait_for_scheduled_animations()
        assert getattr(screen, "task_id", None)

    assert snap_compare(app, terminal_size=SMALL, run_before=open_detail)


@pytest.mark.parametrize("size", [SMALL, WIDE])
async def test_the_table_header_and_footer_speak_chinese(
    app: RecordingApp, size: tuple[int, int]
) -> None:
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        header = str(app.query_one("#header").render())
        assert "视图 全部" in header
        assert ("◔ 运行中 2" if size == WIDE else "◔ 2") in header
        assert f"（显示 {len(ROWS)} 个）" in header
        assert "逾期" in header  # the sixth row is overdue
        top = app.table.row_text(0)
        assert "运行中" in top and "running" not in top
        assert "状态" in app.table._header_strip().text
        # What the footer draws: the shown bindings of the screen's focus chain.
        shown = [b.description for _, b, _, _ in app.screen.active_bindings.values() if b.show]
        assert {"帮助", "退出", "详情", "重试"} <= set(shown) and "Help" not in shown
        for y in range(len(ROWS) + 1):
            assert app.table.render_line(y).cell_length == size[0]


async def test_a_refusal_and_the_help_read_in_chinese(app: RecordingApp) -> None:
    async with app.run_test(size=SMALL) as pilot:
        await loaded(pilot)
        await pilot.press("down", "down", "r")  # the succeeded task cannot be retried
        await pilot.pause()
        said = [note.message for note in app._notifications]
        assert any("只有已失败或已取消的任务可以重试" in str(m) for m in said), said
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = app.screen.text
        assert "任务表" in help_text and "重试光标所在的任务" in help_text
        assert "Retry the task" not in help_text
