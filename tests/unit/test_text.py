"""one_line: the one helper that makes outside text fit a line (errors, reasons, prompts)."""

from __future__ import annotations

import pytest

from core.text import one_line


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
