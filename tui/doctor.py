"""`videoq doctor`: run the configuration checks and print one line per check."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TextIO

from rich.cells import cell_len, set_cell_size

from core.config import Settings
from core.doctor import CheckResult, run_checks
from tui.i18n import tn

GLYPHS = {"ok": "✓", "failed": "✗", "skipped": "–"}
COLOURS = {"ok": "32", "failed": "31", "skipped": "2"}  # green, red, dim


def doctor(settings: Settings, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Print the report; 0 when every check passed (or did not apply), 1 otherwise."""
    results = asyncio.run(run_checks(settings))
    if as_json:
        print(json.dumps([result.as_dict() for result in results], indent=2), file=out)
    else:
        colour = _use_colour(out)
        width = max(cell_len(result.name) for result in results)
        for result in results:
            print(report_line(result, width, colour=colour), file=out)
        failures = sum(not result.ok for result in results)
        summary = tn("{count} check, {failed} failed", "{count} checks, {failed} failed",
                     len(results), failed=failures)  # fmt: skip
        print("\n" + summary, file=out)
    return 0 if all(result.ok for result in results) else 1


def report_line(result: CheckResult, width: int, *, colour: bool = False) -> str:
    """`✓ name  detail`, and `→ what to do` beneath a failure (or a skipped check's hint)."""
    outcome = "skipped" if result.skipped else "ok" if result.ok else "failed"
    glyph = GLYPHS[outcome]
    if colour:
        glyph = f"\x1b[{COLOURS[outcome]}m{glyph}\x1b[0m"
    line = (
        f"{glyph} {set_cell_size(result.name, max(width, cell_len(result.name)))}  {result.detail}"
    )
    if result.fix:
        line += f"\n  {' ' * width}  → {result.fix}"
    return line


def _use_colour(out: TextIO) -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    return out.isatty() and not os.environ.get("NO_COLOR")
