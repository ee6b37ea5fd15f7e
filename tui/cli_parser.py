"""argparse in the interface's language: its usage line, group titles, `-h` and error lines.

Done by subclassing (a parser and a help formatter), never by patching the standard library.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from tui.i18n import outside_text, t


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the catalog's word for "usage:"."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, t("usage: ") if prefix is None else prefix)


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

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(
            2, t("{prog}: error: {message}", prog=self.prog, message=outside_text(message)) + "\n"
        )
