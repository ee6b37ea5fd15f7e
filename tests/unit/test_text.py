"""one_line: the one helper that makes outside text fit a line (errors, reasons, prompts)."""

from __future__ import annotations

import logging

import pytest

from core.text import one_line, visible_lines
from tui.render import LOG_FORMAT, VisibleFormatter


@pytest.mark.parametrize(
    ("text", "limit", "line"),
    [
        ("a  fox\n\tin the\r\nsnow ", None, "a fox in the snow"),
        ("red\x1b[31m alert\x07\x00!", None, "red [31m alert !"),
        ("del\x7fand\x85c1", None, "del and c1"),
        ("内容违规 content flagged", None, "内容违规 content flagged"),
        (None, 10, ""),
        ("   ", 10, ""),
        ("exactly ten", 11, "exactly ten"),
        ("one two three", 8, "one two…"),
        ("one two three", 5, "one…"),
        ("abc", 1, "…"),
    ],
)
def test_one_line_cleans_collapses_and_cuts(text: str | None, limit: int | None, line: str) -> None:
    assert one_line(text, limit) == line
    assert limit is None or len(one_line(text, limit)) <= limit


def test_visible_lines_keeps_line_breaks_and_drops_every_other_control() -> None:
    text = "fox \u001b]0;PWNED\u0007\r\nsnow\u009b2J\tend"
    assert visible_lines(text) == "fox  ]0;PWNED\nsnow 2J end"


def test_log_lines_carry_no_control_characters() -> None:
    record = logging.LogRecord("x", logging.WARNING, "f", 1, "task %s", ("a\u001b[2Jb",), None)
    assert "\x1b" not in VisibleFormatter(LOG_FORMAT).format(record)
