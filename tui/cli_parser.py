"""argparse in the interface's language: its usage line, group titles, `-h` and error lines.

Done by subclassing (a parser and a help formatter), never by patching the standard library.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import cache
from typing import Any, NoReturn

from rich.cells import cell_len

from tui.i18n import outside_text, t


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the catalog's word for "usage:" and its colon after section
    headings, wrapping by terminal cells (textwrap counts characters and breaks only at
    spaces: Chinese would overflow)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headings: list[str] = []

    def start_section(self, heading: str | None) -> None:
        super().start_section(heading)
        if heading:
            self._headings.append(heading)

    def format_help(self) -> str:
        text = super().format_help()
        # argparse ends each heading with an ASCII colon; the catalog says how the language
        # writes it ("选项：" in Chinese, as "用法：" above it).
        for heading in self._headings:
            text = text.replace(f"\n{heading}:\n", "\n" + t("{heading}:", heading=heading) + "\n")
        return text

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, t("usage: ") if prefix is None else prefix)

    def _format_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None) -> str:
        text = super()._format_usage(usage, actions, groups, prefix)
        # argparse indents continuation lines by len(prefix); a wide "用法：" takes more cells.
        extra = cell_len(prefix) - len(prefix) if prefix else 0
        return text.replace("\n ", "\n " + " " * extra) if extra > 0 else text

    def _split_lines(self, text: str, width: int) -> list[str]:
        if text.isascii():
            return super()._split_lines(text, width)
        return wrap_cells(" ".join(text.split()), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.isascii():
            return super()._fill_text(text, width, indent)
        return "\n".join(indent + line for line in wrap_cells(" ".join(text.split()), width))


# A run of characters that stays together: a word with its spaces, or one wide character; an
# opening bracket or quote stays with what follows it (a line never ends on one).
_WIDE = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"


@cache
def _pieces() -> re.Pattern[str]:
    # Compiled when first wrapping (about 10 ms, for the wide ranges), not at every start-up.
    return re.compile(f"[（《“]?(?:[{_WIDE}]|[^\\s{_WIDE}]+\\s*)|\\s+")


def wrap_cells(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, broken at spaces or between CJK characters."""
    lines: list[str] = []
    line = ""
    for piece in _pieces().findall(text):
        if line and cell_len((line + piece).rstrip()) > width:
            lines.append(line.rstrip())
            line = piece.lstrip()
        else:
            line += piece
    if line.strip():
        lines.append(line.rstrip())
    return lines


class Parser(argparse.ArgumentParser):
    """A parser (and, through add_subparsers, every subparser) that speaks the catalog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs["add_help"] = False  # our own -h below, with the help text translated
        super().__init__(*args, **kwargs)
        self._positionals.title = t("positional arguments")
        self._optionals.title = t("options")
        self.add_argument(
            "-h",
            "--help",
            action="help",
            default=argparse.SUPPRESS,
            help=t("show this help message and exit"),
        )

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # A command whose name starts with "_" is internal (shell completion asks it): a
        # mistyped command must not offer it. Worded as argparse words it, so the catalog
        # translates both alike.
        if isinstance(action.choices, dict) and value not in action.choices:
            shown = ", ".join(repr(name) for name in action.choices if not name.startswith("_"))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {shown})")
        super()._check_value(action, value)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(
            2, t("{prog}: error: {message}", prog=self.prog, message=outside_text(message)) + "\n"
        )
