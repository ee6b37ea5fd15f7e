"""A collapsible panel for the in-process worker's log lines, and the handler that feeds it."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque

from textual.widgets import Collapsible, Log

from tui.i18n import t, tn
from tui.render import LOG_FORMAT, VisibleFormatter

PANEL_LINES = 1000
# A full task id in a log line; the panel shows its first 8 characters, as the table does.
TASK_ID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


class ShortIdFormatter(VisibleFormatter):
    """The log format, with task ids cut to the table's short ids to fit narrow terminals."""

    def format(self, record: logging.LogRecord) -> str:
        return TASK_ID.sub(r"\1", super().format(record))


class LogPanel(Collapsible):
    """The worker's log, folded away under one title line until the operator opens it."""

    def __init__(self, **kwargs: object) -> None:
        log = Log(max_lines=PANEL_LINES, id="log")
        title = t("Worker log")
        super().__init__(log, title=title, collapsed=True, **kwargs)  # type: ignore[arg-type]
        self.lines = 0
        self.warnings = 0

    def write(self, records: list[tuple[int, str]]) -> None:
        """Append formatted records and keep the title's line and warning counts current."""
        self.query_one("#log", Log).write_lines(line for _, line in records)
        self.lines += len(records)
        self.warnings += sum(1 for level, _ in records if level >= logging.WARNING)
        lines = tn("{count} line", "{count} lines", self.lines)
        if self.warnings:
            lines += tn(", {count} warning", ", {count} warnings", self.warnings)
        self.title = t("Worker log ({lines})", lines=lines)


class PanelLogHandler(logging.Handler):
    """Hands log records to a LogPanel from any thread, batched, never touching the terminal."""

    def __init__(self, level: int = logging.INFO, buffer: int = PANEL_LINES) -> None:
        super().__init__(level)
        self.setFormatter(ShortIdFormatter(LOG_FORMAT, "%H:%M:%S"))
        self._pending: deque[tuple[int, str]] = deque(maxlen=buffer)
        self._guard = threading.Lock()
        self._panel: LogPanel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def attach(self, panel: LogPanel) -> None:
        """Start delivering to `panel`; call from the app's event loop."""
        self._panel = panel
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def detach(self) -> None:
        self._panel = None
        self._loop = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging must never raise into the code that logged
            self.handleError(record)
            return
        with self._guard:
            self._pending.append((record.levelno, line))
        self._schedule()

    def _schedule(self) -> None:
        with self._guard:
            if self._scheduled or self._loop is None or not self._pending:
                return
            self._scheduled = True
            loop = self._loop
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            # The app's loop has closed: keep the lines buffered and stop scheduling.
            self.detach()

    def _deliver(self) -> None:
        with self._guard:
            records = list(self._pending)
            self._pending.clear()
            self._scheduled = False
        if self._panel is not None and records and self._panel.is_mounted:
            self._panel.write(records)
