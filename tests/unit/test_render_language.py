"""The CLI's tables in both languages: columns line up by terminal cells with CJK text in them,
and a cut never splits a wide character."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.cells import cell_len

from core.doctor import CheckResult
from core.queue import DeadLetter
from tui.doctor import report_line
from tui.i18n import ZH_CN, using
from tui.render import dead_table, ellipsize

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REASONS = ("视频内容审核未通过，请修改提示词后重试" * 3, "upstream refused the key", "上游繁忙")


def letters() -> list[DeadLetter]:
    return [
        DeadLetter(
            f"msg_{n}abcdef12", f"{n}f2a1b2c-0000", "poll-3", NOW - timedelta(hours=n), 489, reason
        )  # fmt: skip
        for n, reason in enumerate(REASONS, start=1)
    ]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("language", ["en", ZH_CN])
def test_dead_letters_line_up_by_cells(width: int, language: str) -> None:
    with using(language):
        lines = dead_table(letters(), width).splitlines()
    assert len(lines) == 4 and all(cell_len(line) <= width for line in lines)
    starts = {cell_len(line[: line.index(reason[:3])]) for line, reason in zip(
        lines[1:], REASONS, strict=True)}  # fmt: skip
    assert len(starts) == 1
    header_reason = "原因" if language == ZH_CN else "REASON"
    assert cell_len(lines[0][: lines[0].index(header_reason)]) in starts


def test_a_cut_never_splits_a_wide_character_and_the_ellipsis_fits() -> None:
    for width in range(1, 12):
        cut = ellipsize("视频内容审核未通过", width)
        assert cell_len(cut) <= width and cut.endswith("…")
        assert "\ufffd" not in cut and cut[:-1] == "视频内容审核未通过"[: len(cut) - 1]


def test_doctor_lines_pad_names_by_cells() -> None:
    results = [
        CheckResult("存储", ok=True, detail="可写"),
        CheckResult("disk space", ok=True, detail="78 GB free"),
    ]
    width = max(cell_len(result.name) for result in results)
    lines = [report_line(result, width) for result in results]
    assert [cell_len(line[: line.index(r.detail)]) for line, r in zip(
        lines, results, strict=True)] == [width + 4] * 2  # fmt: skip


@pytest.mark.parametrize("width", [72, 152])
@pytest.mark.parametrize("language", ["en", ZH_CN])
def test_failure_groups_line_up_with_their_legend(width: int, language: str) -> None:
    from core.insight import FailureGroup
    from tui.screens.failures import group_line, legend_line

    groups = [
        FailureGroup(reason, count=n * 7, recovered=n, newest_at=NOW - timedelta(hours=n * 5))
        for n, reason in enumerate(REASONS, start=1)
    ]
    with using(language):
        legend = legend_line()
        lines = [group_line(group, NOW, width) for group in groups]
    assert all(cell_len(line) <= width for line in lines)
    starts = {cell_len(line[: line.index(g.reason[:3])]) for line, g in zip(
        lines, groups, strict=True)}  # fmt: skip
    reason_word = "原因" if language == ZH_CN else "REASON"
    assert starts == {cell_len(legend[: legend.index(reason_word)])}
