"""PostgREST's query-string grammar (the part postgrest-py emits) turned into SQL."""

from __future__ import annotations

from psycopg import sql

from tests.fakes.supabase.errors import PgrstError

RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})

_OPERATORS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "like": "like", "ilike": "ilike", "match": "~", "imatch": "~*",
}  # fmt: skip
_IS_VALUES = {"null": "null", "true": "true", "false": "false", "unknown": "unknown"}


def _parse_error(what: str, raw: str, details: str) -> PgrstError:
    return PgrstError(
        400, "PGRST100", f'"failed to parse {what} ({raw})" (line 1, column 1)', details
    )


def split_list(raw: str) -> list[str]:
    """Split `a,"b,c",d` on commas outside double quotes, unquoting and unescaping items."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in raw:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def parse_filter(column: str, raw: str) -> sql.Composable:
    """`status=in.(queued,running)` -> `_t."status" in ('queued', 'running')`."""
    target = sql.SQL("_t.{}").format(sql.Identifier(column))
    negate = raw.startswith("not.")
    body = raw[4:] if negate else raw
    op, dot, value = body.partition(".")
    if not dot:
        raise _parse_error("filter", raw, 'unexpected end of input expecting "."')
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise _parse_error("filter", raw, 'unexpected end of input expecting "("')
        items = split_list(value[1:-1]) if value[1:-1] else []
        if not items:
            condition: sql.Composable = sql.SQL("false")
        else:
            listed = sql.SQL(", ").join(sql.Literal(item) for item in items)
            condition = sql.SQL("{} in ({})").format(target, listed)
    elif op == "is":
        if value.lower() not in _IS_VALUES:
            raise _parse_error("filter", raw, "expecting null, true, false or unknown")
        condition = sql.SQL("{} is {}").format(target, sql.SQL(_IS_VALUES[value.lower()]))
    elif op in _OPERATORS:
        if op in ("like", "ilike"):
            value = value.replace("*", "%")
        condition = sql.SQL("{} {} {}").format(target, sql.SQL(_OPERATORS[op]), sql.Literal(value))
    else:
        raise _parse_error("filter", raw, "expecting operator (eq, gt, ...)")
    return sql.SQL("not ({})").format(condition) if negate else condition


def parse_order(raw: str | None) -> sql.Composable:
    """`created_at.desc,id.asc.nullslast` -> ` order by ...`."""
    if not raw:
        return sql.SQL("")
    terms = []
    for item in raw.split(","):
        column, *modifiers = item.split(".")
        parts: list[sql.Composable] = [sql.SQL("_t.{}").format(sql.Identifier(column))]
        for modifier in modifiers:
            if modifier not in ("asc", "desc", "nullsfirst", "nullslast"):
                raise _parse_error("order", raw, f"unexpected {modifier!r}")
            parts.append(sql.SQL(modifier.replace("nulls", "nulls ")))
        terms.append(sql.SQL(" ").join(parts))
    return sql.SQL(" order by ") + sql.SQL(", ").join(terms)


def parse_select(raw: str) -> sql.Composable:
    """`*` or `id,status` (no embedding, no casts, no aliases)."""
    columns = [column.strip() for column in raw.split(",") if column.strip()]
    if not columns or "*" in columns:
        return sql.SQL("_t.*")
    for column in columns:
        if not column.replace("_", "").isalnum():
            raise _parse_error("select", raw, f"unsupported select item {column!r}")
    return sql.SQL(", ").join(sql.SQL("_t.{}").format(sql.Identifier(c)) for c in columns)
