"""QStash wire formats: delays, Retry-After values, retry-delay expressions, flow control."""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from core.retry import RetryPolicy

MAX_RETRY_AFTER = 86400.0
"""QStash honours a Retry-After style value only up to one day."""

RETRY_AFTER_HEADERS = (
    "Retry-After",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-Requests",
    "X-RateLimit-Reset-Tokens",
)

_DELAY_PART = re.compile(r"(\d+)([smhd])")
_DELAY = re.compile(r"(?:\d+[smhd])+")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_DELAY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_delay(text: str) -> int:
    """Seconds of an `Upstash-Delay` value such as `10s`, `1m` or `1d10h30m`; ValueError if bad."""
    text = text.strip()
    if not _DELAY.fullmatch(text):
        raise ValueError(f"invalid delay {text!r}")
    return sum(int(n) * _DELAY_UNITS[unit] for n, unit in _DELAY_PART.findall(text))


def parse_period(text: str) -> float:
    """Seconds of a flow-control period: a bare number of seconds or a delay string."""
    text = text.strip()
    return float(text) if text.isdigit() else float(parse_delay(text))


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After style value (seconds, RFC 1123 date or Go duration)."""
    value = value.strip()
    if not value:
        return None
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _go_or_date(value, time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _go_or_date(value: str, now: float) -> float | None:
    if _GO_DURATION.fullmatch(value):
        return sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(value))
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """The first usable Retry-After style header of a response, if it is at most one day."""
    for name in RETRY_AFTER_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        seconds = parse_retry_after(raw)
        if seconds is not None and seconds <= MAX_RETRY_AFTER:
            return seconds
    return None


_QSTASH_BACKOFF = RetryPolicy.qstash()


def default_backoff(retry_number: int) -> float:
    """QStash's backoff before retry `retry_number` (1 for the first retry): min(1 day, e^2.5n)."""
    return _QSTASH_BACKOFF.delay(retry_number - 1)


_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "pow": math.pow,
    "sqrt": math.sqrt,
    "abs": abs,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
    "round": round,
    "min": min,
    "max": max,
}


class RetryDelay:
    """An `Upstash-Retry-Delay` expression: milliseconds as a function of `retried`."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            self._tree = ast.parse(expression, mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"invalid retry delay expression {expression!r}") from exc
        self.seconds(0)  # refuse a bad expression at publish time, as QStash does

    def seconds(self, retried: int) -> float:
        """The delay before the retry that follows `retried` earlier retries, in seconds."""
        try:
            return max(0.0, float(self._eval(self._tree, retried)) / 1000.0)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ValueError(f"retry delay expression {self.expression!r} failed") from exc

    def _eval(self, node: ast.AST, retried: int) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            # floats overflow quickly instead of building giant integers
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "retried":
            return float(retried)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._eval(node.left, retried), self._eval(node.right, retried)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self._eval(node.operand, retried)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            function = _FUNCTIONS.get(node.func.id)
            if function is not None:
                return function(*(self._eval(arg, retried) for arg in node.args))
        raise ValueError(f"unsupported element in retry delay expression {self.expression!r}")


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """The limits an `Upstash-Flow-Control-Value` header asks for."""

    parallelism: int | None = None
    rate: int | None = None
    period: float = 1.0


def parse_flow_value(text: str) -> FlowLimits:
    """`parallelism=P, rate=R, period=D` in any order, each optional; ValueError if malformed."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in {"parallelism", "rate", "period"}:
            raise ValueError(f"invalid flow control value {text!r}")
        values[name.strip()] = value.strip()
    try:
        parallelism = int(values["parallelism"]) if "parallelism" in values else None
        rate = int(values["rate"]) if "rate" in values else None
        period = parse_period(values["period"]) if "period" in values else 1.0
    except ValueError as exc:
        raise ValueError(f"invalid flow control value {text!r}") from exc
    if (parallelism is not None and parallelism < 1) or (rate is not None and rate < 1):
        raise ValueError(f"invalid flow control value {text!r}")
    return FlowLimits(parallelism, rate, period)
