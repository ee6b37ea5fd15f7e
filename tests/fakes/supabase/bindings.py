"""postgres_changes bindings: their ids, their filters, and the frames a change turns into."""

from __future__ import annotations

import fnmatch
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.supabase.filters import split_list

_COMPARISONS = ("eq", "neq", "lt", "lte", "gt", "gte", "like", "ilike", "in", "is")


class FilterSyntaxError(ValueError):
    """A binding filter the real server would refuse with "Error parsing `filter` params"."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: str | list[str]
    negate: bool = False

    def holds(self, row: dict[str, Any], types: dict[str, str]) -> bool:
        """SQL semantics on one row image: a missing column or a NULL fails the test."""
        if self.column not in row:
            return False
        result = self._compare(row[self.column], types.get(self.column, "text"))
        return (not result) if self.negate else result

    def _compare(self, raw: Any, typname: str) -> bool:
        if self.op == "is":
            return _is(raw, str(self.value))
        if raw is None:
            return False
        actual = coerce(typname, raw)
        if self.op == "in":
            return actual in [coerce(typname, item) for item in self.value]
        expected = coerce(typname, self.value)
        try:
            return _OPS[self.op](actual, expected)
        except TypeError:
            return False


def _like(actual: Any, pattern: Any, *, fold: bool = False) -> bool:
    glob = str(pattern).replace("%", "*").replace("_", "?")
    text = str(actual)
    if fold:
        text, glob = text.lower(), glob.lower()
    return fnmatch.fnmatchcase(text, glob)


_OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "like": _like,
    "ilike": lambda a, b: _like(a, b, fold=True),
}


def _is(raw: Any, value: str) -> bool:
    value = value.lower()
    if value in ("null", "unknown"):
        return raw is None
    return raw is (value == "true")


def coerce(typname: str, value: Any) -> Any:
    """A JSON or filter value as the Python value its PostgreSQL type compares like."""
    if typname in ("int2", "int4", "int8"):
        return int(value)
    if typname in ("float4", "float8", "numeric"):
        return float(value)
    if typname == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("true", "t")
    if typname in ("timestamptz", "timestamp"):
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return value if isinstance(value, str) else json.dumps(value)


def parse_binding_filter(raw: str | None) -> list[Condition]:
    """`status=in.(queued,running),attempt=gt.1` -> conditions joined by AND."""
    if raw is None or not raw.strip():
        return []
    conditions = []
    for part in _split_conditions(raw):
        column, eq, rest = part.partition("=")
        negate = rest.startswith("not.")
        op, dot, value = (rest[4:] if negate else rest).partition(".")
        if not eq or not dot or not column or op not in _COMPARISONS:
            raise FilterSyntaxError(json.dumps(part.split("=")))
        if op == "in":
            if not (value.startswith("(") and value.endswith(")")):
                raise FilterSyntaxError("`in` filter value must be wrapped by parentheses")
            items = [item.strip() for item in split_list(value[1:-1])]
            conditions.append(Condition(column.strip(), op, items, negate))
        else:
            conditions.append(Condition(column.strip(), op, value, negate))
    return conditions


def _split_conditions(raw: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif char == "," and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def binding_id(binding: dict[str, Any]) -> int:
    """A stable non-zero id below 2**27 (the real server uses :erlang.phash2 of the binding)."""
    digest = zlib.crc32(json.dumps(binding, sort_keys=True).encode())
    return digest % (2**27 - 1) + 1


@dataclass
class Binding:
    id: int
    event: str
    schema: str
    table: str | None
    conditions: list[Condition] = field(default_factory=list)

    def matches(self, change: Change, types: dict[str, str]) -> bool:
        """Does this binding want `change`? Filters test the new row, DELETE the old one."""
        if self.schema not in ("*", change.schema) or self.table not in (None, "*", change.table):
            return False
        if self.event.upper() not in ("*", change.op):
            return False
        row = change.old_record if change.op == "DELETE" else change.record
        return all(condition.holds(row or {}, types) for condition in self.conditions)


@dataclass(frozen=True)
class Change:
    seq: int
    schema: str
    table: str
    op: str
    record: dict[str, Any] | None
    old_record: dict[str, Any] | None
    commit_timestamp: datetime


@dataclass(frozen=True)
class TableMeta:
    columns: list[tuple[str, str]]
    primary_key: list[str]
    replica_full: bool
    rls: bool
    published: bool

    @property
    def types(self) -> dict[str, str]:
        return dict(self.columns)


def commit_timestamp(moment: datetime) -> str:
    """`2025-11-19T00:22:40.877Z`: milliseconds and Z, as realtime.apply_rls formats it."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _too_large(data: dict[str, Any], max_record_bytes: int) -> bool:
    size = len(json.dumps(data.get("record")).encode()) + len(
        json.dumps(data.get("old_record")).encode()
    )
    return size > max_record_bytes


def _small_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if len(json.dumps(value).encode()) <= 64}


def change_frame(
    topic: str,
    change: Change,
    meta: TableMeta,
    columns: list[tuple[str, str]],
    ids: list[int],
    max_record_bytes: int = 1_048_576,
) -> dict[str, Any]:
    """The V1 `postgres_changes` frame of reference §1.6 for one channel and one change.

    Rows over `max_record_bytes` keep only fields of at most 64 bytes and carry
    `errors: ["Error 413: Payload Too Large"]`, as realtime.apply_rls does.
    """
    names = [name for name, _ in columns]
    data: dict[str, Any] = {
        "schema": change.schema,
        "table": change.table,
        "commit_timestamp": commit_timestamp(change.commit_timestamp),
        "type": change.op,
        "columns": [{"name": name, "type": typname} for name, typname in columns],
        "errors": None,
    }
    if change.op != "DELETE":
        data["record"] = {name: (change.record or {}).get(name) for name in names}
    if change.op != "INSERT":
        full = meta.replica_full and not (change.op == "DELETE" and meta.rls)
        keep = names if full else [name for name in names if name in meta.primary_key]
        data["old_record"] = {name: (change.old_record or {}).get(name) for name in keep}
    if _too_large(data, max_record_bytes):
        for key in ("record", "old_record"):
            if key in data:
                data[key] = _small_fields(data[key])
        data["errors"] = ["Error 413: Payload Too Large"]
    return {
        "topic": topic,
        "event": "postgres_changes",
        "ref": None,
        "payload": {"ids": ids, "data": data},
    }
