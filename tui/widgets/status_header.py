"""The two header lines: where tasks live, how the feed is doing, and how many tasks are where."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from textual.markup import escape
from textual.widgets import Static

from core.models import TaskStatus
from core.store import FeedState, FeedStatus
from tui.render import age

FEED_COLOURS = {FeedState.LIVE: "$success", FeedState.RECONNECTING: "$warning"}
STATUS_COLOURS = {
    TaskStatus.QUEUED: "$text-muted",
    TaskStatus.RUNNING: "$accent",
    TaskStatus.SUCCEEDED: "$success",
    TaskStatus.FAILED: "$error",
    TaskStatus.CANCELLED: "$warning",
}


@dataclass(frozen=True)
class HeaderInfo:
    """Everything the header shows, gathered by the app."""

    backend: str
    upstream: str
    worker: str
    feed: FeedStatus
    counts: Mapping[TaskStatus, int]
    finished_per_minute: int
    view: str
    sort: str
    search: str
    selected: int
    shown: int
    now: datetime


def feed_markup(feed: FeedStatus, now: datetime) -> str:
    colour = FEED_COLOURS.get(feed.state, "$error")
    text = f"[{colour}]● {feed.state.value}[/]"
    if feed.last_event_at is not None:
        text += f" [dim](last event {age(feed.last_event_at, now)} ago)[/]"
    if feed.detail and feed.state is not FeedState.LIVE:
        text += f" [dim]{escape(feed.detail)}[/]"
    return text


def header_markup(info: HeaderInfo) -> str:
    """Two lines of Textual markup (dynamic text escaped)."""
    # Health first: if the line is cut at a narrow width, it is the long descriptions that go.
    first = "  ·  ".join(
        (
            "[b]videoq[/]  feed " + feed_markup(info.feed, info.now),
            f"worker: {escape(info.worker)}",
            escape(info.backend),
            f"upstream: {escape(info.upstream)}",
        )
    )
    counts = "  ".join(
        f"[{STATUS_COLOURS[status]}]{status.value}[/] [b]{info.counts.get(status, 0)}[/]"
        for status in TaskStatus
    )
    view = [counts, f"view [b]{info.view}[/] ({info.shown} shown)"]
    if info.search:
        view.append(f'filter [b]"{escape(info.search)}"[/]')
    if info.selected:
        view.append(f"[$accent][b]{info.selected}[/] selected[/]")
    view += [f"sort [b]{escape(info.sort)}[/]", f"[b]{info.finished_per_minute}[/] finished/min"]
    return first + "\n" + "  ·  ".join(view)


class StatusHeader(Static):
    """The dashboard's header; the app hands it a fresh HeaderInfo when something changes."""

    _shown = ""

    def show(self, info: HeaderInfo) -> None:
        markup = header_markup(info)
        if markup != self._shown:
            # The header's size never changes, so skip the screen layout `update` would do.
            self._shown = markup
            self.update(markup, layout=False)
