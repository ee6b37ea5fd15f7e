"""RetryPolicy: table tests of delays, exhaustion, QStash's default and scaling."""

from __future__ import annotations

import math

import pytest

from core.errors import ConfigError
from core.retry import DAY, RetryPolicy

DOUBLING = RetryPolicy(retries=4, base=1.0, factor=2.0, cap=5.0)
QSTASH = RetryPolicy.qstash()


@pytest.mark.parametrize(
    ("retried", "seconds"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (4, 5.0), (10_000, 5.0)],
)
def test_delay_grows_by_the_factor_up_to_the_cap(retried: int, seconds: float) -> None:
    assert DOUBLING.delay(retried) == seconds


@pytest.mark.parametrize(
    ("retried", "seconds"),
    [
        (0, 12.18),  # "12 s"
        (1, 148.41),  # "2 m 28 s"
        (2, 1808.04),  # "30 m 8 s"
        (3, 22026.47),  # "6 h 7 m 6 s"
        (4, DAY),  # capped at one day
        (9, DAY),
    ],
)
def test_qstash_default_matches_the_documented_backoff(retried: int, seconds: float) -> None:
    assert QSTASH.delay(retried) == pytest.approx(seconds, abs=0.01)
    assert QSTASH.delay(retried) == pytest.approx(min(DAY, math.exp(2.5 * (retried + 1))))


def test_qstash_default_allows_three_retries() -> None:
    assert QSTASH.retries == 3
    assert [round(d) for d in QSTASH.delays()] == [12, 148, 1808]


@pytest.mark.parametrize(
    ("policy", "retried", "exhausted"),
    [
        (DOUBLING, 0, False),
        (DOUBLING, 3, False),
        (DOUBLING, 4, True),
        (DOUBLING, 5, True),
        (RetryPolicy(retries=0, base=1, factor=1, cap=1), 0, True),
        (QSTASH, 2, False),
        (QSTASH, 3, True),
    ],
)
def test_exhausted_after_the_last_allowed_retry(
    policy: RetryPolicy, retried: int, exhausted: bool
) -> None:
    assert policy.exhausted(retried) is exhausted


@pytest.mark.parametrize(("scale", "first", "cap"), [(0.001, 0.012, 86.4), (2.0, 24.37, 172800)])
def test_scaled_multiplies_every_wait(scale: float, first: float, cap: float) -> None:
    scaled = QSTASH.scaled(scale)
    assert scaled.delay(0) == pytest.approx(first, abs=0.01)
    assert scaled.delay(50) == pytest.approx(cap)
    assert scaled.retries == QSTASH.retries and scaled.factor == QSTASH.factor
    assert [s / scale for s in scaled.delays()] == pytest.approx(list(QSTASH.delays()))


def test_policies_are_frozen_values() -> None:
    assert RetryPolicy.qstash() == QSTASH
    with pytest.raises(AttributeError):
        QSTASH.retries = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"retries": -1, "base": 1.0, "factor": 2.0, "cap": 5.0},
        {"retries": 1, "base": -1.0, "factor": 2.0, "cap": 5.0},
        {"retries": 1, "base": 1.0, "factor": 0.5, "cap": 5.0},
        {"retries": 1, "base": 1.0, "factor": 2.0, "cap": math.inf},
        {"retries": 1, "base": math.nan, "factor": 2.0, "cap": 5.0},
    ],
)
def test_nonsense_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf])
def test_nonsense_scales_are_refused(scale: float) -> None:
    with pytest.raises(ConfigError):
        QSTASH.scaled(scale)


def test_a_negative_retry_count_is_a_bug() -> None:
    with pytest.raises(ValueError):
        DOUBLING.delay(-1)
