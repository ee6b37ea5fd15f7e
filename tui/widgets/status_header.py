"""The two header lines: where tasks live, how the feed and worker are doing, and the counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from textual.markup import escape
from textual.widgets import Static

from core.insight import UpstreamHealth
from core.models import TaskStatus
from core.qstash_guard import NEAR_BUDGET
from core.store import FeedState, FeedStatus, Usage
from tui.i18n import N_, outside_text, t, tn
from tui.render import age
from tui.state.task_cells import STATUS_GLYPHS, status_label
from tui.widgets.styled import styled

# Below this width the header uses its short forms so that both lines fit.
NARROW = 120
STATUS_CLASSES = frozenset(f"status--{status}" for status in TaskStatus)
FEED_CLASSES = frozenset(f"feed--{state}" for state in FeedState)

Styler = Callable[[str, str], str]  # (component class, text) -> markup


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
    other_workers: int = 0
    # Rows the last snapshot could not decode (`videoq list` names them).
    unreadable: int = 0
    # Running tasks past their expected time, and those whose progress stopped moving.
    overdue: int = 0
    stalled: int = 0
    # Succeeded and failed per minute, oldest first (the wide header draws them).
    finished_series: tuple[Sequence[int], Sequence[int]] = ((), ())
    # Upstream calls of this process's worker lately (None without a worker here).
    upstream_health: UpstreamHealth | None = None
    dead_letters: int | None = None
    """How many messages the queue gave up on; None until first read (then not shown)."""
    qstash_usage: Usage | None = None
    """Today's QStash messages, in QStash mode only (the local queue bills nothing)."""
    qstash_budget: int | None = None
    degraded: str | None = None
    """"degraded: QStash unreachable since …" while QStash refuses this process."""


def plain(_: str, text: str) -> str:
    """A styler that adds no style (for tests and plain text)."""
    return text


def feed_markup(
    feed: FeedStatus, now: datetime, style: Styler = plain, *, narrow: bool = False
) -> str:
    text = style(f"feed--{feed.state}", f"● {t(FEED_WORDS.get(feed.state, feed.state.value))}")
    if feed.last_event_at is not None:
        ago = age(feed.last_event_at, now)
        last = t("({age} ago)", age=ago) if narrow else t("(last event {age} ago)", age=ago)
        text += f" [dim]{last}[/]"
    if feed.detail and feed.state is not FeedState.LIVE:
        text += f" [dim]{escape(outside_text(feed.detail))}[/]"
    return text


def worker_markup(info: HeaderInfo, style: Styler = plain) -> str:
    text = t("worker {state}", state=escape(info.worker))
    if info.other_workers:
        others = tn(
            "(+another worker on this store)",
            "(+{count} workers on this store)",
            info.other_workers,
        )
        text += " " + style("header--warning", others)
    return text


# The feed's states in words (FeedState's values are the keys).
FEED_WORDS = {
    FeedState.LIVE: N_("live"),
    FeedState.RECONNECTING: N_("reconnecting"),
    FeedState.OFFLINE: N_("offline"),
}


SPARKS = "▁▂▃▄▅▆▇█"


SPARK_CELLS = 10


def sparkline(values: Sequence[int], cells: int = SPARK_CELLS) -> str:
    """`values` summed into `cells` equal buckets, scaled to the busiest: ▁ is none, █ the top."""
    size = max(1, -(-len(values) // cells))
    buckets = [sum(values[i : i + size]) for i in range(0, len(values), size)]
    top = max(buckets, default=0)
    levels = len(SPARKS) - 1
    return "".join(SPARKS[0] if not v else SPARKS[1 + (v * levels - 1) // top] for v in buckets)


def health_markup(health: UpstreamHealth | None, style: Styler, narrow: bool) -> str:
    """`upstream 4% failed, p95 340 ms`; said only when something failed at narrow widths."""
    if health is None or not health.calls or (narrow and not health.failed):
        return ""
    text = t("upstream {share} failed", share=f"{health.failed_share:.0%}")
    if health.p95_seconds is not None and not narrow:
        text += t(", p95 {ms} ms", ms=f"{health.p95_seconds * 1000:.0f}")
    return style("header--warning", text) if health.failed else text


def dead_markup(info: HeaderInfo, style: Styler = plain) -> list[str]:
    """The dead-letter count as a warning while there is any (d lists them); else nothing, so
    an 80-column header keeps its room for the worker and the store."""
    if not info.dead_letters:
        return []
    return [style("header--warning", t("{count} dead (d)", count=info.dead_letters))]


def qstash_markup(info: HeaderInfo, style: Styler = plain) -> list[str]:
    """ "QStash 312 / 1,000 today" (a warning from 80 % of the budget), and any outage."""
    parts = []
    if info.degraded:
        parts.append(style("header--warning", escape(outside_text(info.degraded))))
    if info.qstash_usage is not None:
        used, budget = info.qstash_usage.total, info.qstash_budget
        text = (
            t("QStash {used} / {budget} today", used=f"{used:,}", budget=f"{budget:,}")
            if budget
            else t("QStash {used} today", used=f"{used:,}")
        )
        near = budget is not None and used >= NEAR_BUDGET * budget
        parts.append(style("header--warning", text) if near else text)
    return parts


def header_markup(info: HeaderInfo, style: Styler = plain, width: int = NARROW) -> str:
    """Two lines of Textual markup (dynamic text escaped); short forms below NARROW cells."""
    narrow = width < NARROW
    gap = " · " if narrow else "  ·  "
    # Health first: if the line is cut at a narrow width, it is the long descriptions that go.
    first = gap.join(
        (
            "[b]videoq[/]  " + feed_markup(info.feed, info.now, style, narrow=narrow),
            *qstash_markup(info, style),
            *dead_markup(info, style),
            worker_markup(info, style),
            escape(info.backend),
            escape(info.upstream) if narrow else t("upstream: {name}", name=escape(info.upstream)),
        )
    )
    counts = "  ".join(
        style(
            f"status--{status}",
            STATUS_GLYPHS[status] if narrow else status_label(status),
        )
        + f" [b]{info.counts.get(status, 0)}[/]"
        for status in TaskStatus
    )
    view = [counts]
    if info.overdue or info.stalled:
        late = [
            f"[b]{n}[/] {t(word)}"
            for n, word in ((info.overdue, N_("overdue")), (info.stalled, N_("stalled")))
            if n
        ]
        view.append(style("header--warning", " ".join(late)))
    view.append(t("view [b]{view}[/] ({shown} shown)", view=t(info.view), shown=info.shown))
    if info.unreadable:
        rows = tn("⚠ {count} unreadable row", "⚠ {count} unreadable rows", info.unreadable)
        view.insert(0, style("header--warning", rows))
    if info.search:
        view.append(t('filter [b]"{search}"[/]', search=escape(info.search)))
    if info.selected:
        view.append(style("header--selected", t("[b]{count}[/] selected", count=info.selected)))
    sort = f"[b]{escape(t(info.sort))}[/]"
    view.append(sort if narrow else t("sort {order}", order=sort))
    succeeded, failed = info.finished_series
    if narrow or not succeeded:
        view.append(t("[b]{count}[/] done/min", count=info.finished_per_minute))
    else:
        view.append(
            style("status--succeeded", f"✓{sparkline(succeeded)}")
            + " "
            + style("status--failed", f"✗{sparkline(failed)}")
        )
    if health := health_markup(info.upstream_health, style, narrow):
        view.append(health)
    return first + "\n" + gap.join(view)


class StatusHeader(Static):
    """The dashboard's header; the app hands it a fresh HeaderInfo when something changes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *STATUS_CLASSES,
        *FEED_CLASSES,
        "header--warning",
        "header--selected",
    }

    _shown = ""
    _info: HeaderInfo | None = None

    def styled(self, name: str, text: str) -> str:
        return styled(self, name, text)

    def show(self, info: HeaderInfo) -> None:
        self._info = info
        markup = header_markup(info, self.styled, self.size.width or NARROW)
        if markup != self._shown:
            # The header's size never changes, so skip the screen layout `update` would do.
            self._shown = markup
            self.update(markup, layout=False)

    def on_resize(self) -> None:
        if self._info is not None:
            self.show(self._info)
