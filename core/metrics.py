"""Prometheus metrics through `prometheus_client`, without its process-wide registry.

The numbers live where they happen (worker, queue, reconciler); `/metrics` reads them at scrape
time into a `Scrape`, which `prometheus_client` renders, so nothing on the hot path formats text.
Several runtimes can live in one process (the tests run many), hence no global registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

from prometheus_client import Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREFIX = "videoq_"
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

Labels = Mapping[str, str]


def latency_histogram(name: str, help_text: str) -> Histogram:
    """A histogram of seconds that its owner keeps and a `Scrape` exports."""
    return Histogram(PREFIX + name, help_text, buckets=LATENCY_BUCKETS, registry=None)


class Scrape:
    """One scrape's worth of metric families, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._families: list[Metric] = []

    def family(
        self,
        name: str,
        kind: Literal["counter", "gauge"],
        help_text: str,
        samples: Iterable[tuple[Labels, float]],
    ) -> None:
        """One family with labelled samples; every sample has the same label names."""
        rows = list(samples)
        names = list(rows[0][0]) if rows else []
        maker = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = maker(PREFIX + name, help_text, labels=names)
        for labels, value in rows:
            family.add_metric([labels[label] for label in names], value)
        self._families.append(family)

    def single(
        self, name: str, kind: Literal["counter", "gauge"], help_text: str, value: float
    ) -> None:
        """A family with one unlabelled sample."""
        self.family(name, kind, help_text, [({}, value)])

    def include(self, collector: Collector) -> None:
        """Add a metric its owner keeps (a `latency_histogram`, say)."""
        self._collectors.append(collector)

    def collect(self) -> Iterator[Metric]:
        yield from self._families
        for collector in self._collectors:
            yield from collector.collect()

    def render(self) -> bytes:
        return generate_latest(self)
