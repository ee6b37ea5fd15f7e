"""Prometheus text exposition, hand-written: a latency histogram and a small renderer.

The numbers themselves live where they happen (worker, queue, reconciler); `/metrics` reads them
at scrape time and renders them here, so nothing on the hot path formats text.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

Labels = Mapping[str, str]


@dataclass
class Histogram:
    """Observations in fixed buckets (upper bounds in seconds), plus their sum and count."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation of `value` seconds."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) per bucket, ending with +Inf."""
        running, rows = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            rows.append(("+Inf" if bound == math.inf else _number(bound), running))
        return rows


class Exposition:
    """Builds one scrape's worth of metric families in the Prometheus text format."""

    def __init__(self, prefix: str = "videoq_") -> None:
        self.prefix = prefix
        self._lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        """One metric family (`counter` or `gauge`) with its labelled samples."""
        full = self.prefix + name
        self._head(full, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{full}{_labels(labels)} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        """A family with one unlabelled sample."""
        self.family(name, kind, help_text, [({}, value)])

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        """A histogram family: cumulative buckets, sum and count."""
        full = self.prefix + name
        self._head(full, "histogram", help_text)
        for le, count in histogram.cumulative():
            self._lines.append(f'{full}_bucket{{le="{le}"}} {count}')
        self._lines.append(f"{full}_sum {_number(histogram.total)}")
        self._lines.append(f"{full}_count {histogram.count}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"

    def _head(self, full: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {full} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {full} {kind}")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_value(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(float(value))
