"""The PostgREST subset supabase-py speaks: /rest/v1/<table> and /rest/v1/rpc/<function>.

Each request runs in one transaction as the `authenticator` role, switched to the JWT's role with
`request.jwt.claims` set, so grants and row level security are PostgreSQL's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.supabase.errors import PgrstError, pg_error
from tests.fakes.supabase.filters import RESERVED_PARAMS, parse_filter, parse_order, parse_select
from tests.fakes.supabase.pool import Pool
from tests.fakes.supabase.tokens import OPAQUE_PREFIX, ProjectKeys, TokenError, verify_token

SCHEMA = "public"
SINGLE_OBJECT = "application/vnd.pgrst.object+json"
JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Caller:
    role: str
    claims: dict[str, Any]


def authenticate(request: Request, keys: ProjectKeys) -> Caller:
    """The JWT role and claims of a request, checked the way Kong and PostgREST check them.

    An `sb_` key stands for the role the gateway maps it to; in `Authorization` it is accepted
    only when it equals the `apikey` header (api-keys.mdx), as supabase-py sends it.
    """
    apikey = request.headers.get("apikey") or request.query_params.get("apikey")
    if not apikey:
        raise PgrstError(
            401,
            None,
            "No API key found in request",
            hint="No `apikey` request header or url param was found.",
        )
    try:
        apikey_claims = keys.claims(apikey)
    except TokenError:
        hint = "Double check your Supabase `anon` or `service_role` API key."
        raise PgrstError(401, None, "Invalid API key", hint=hint) from None
    bearer = request.headers.get("authorization", "")
    token = bearer[7:] if bearer.lower().startswith("bearer ") else apikey
    if token.startswith(OPAQUE_PREFIX):
        if token != apikey:
            hint = "A publishable or secret key in Authorization must equal the apikey header."
            raise PgrstError(401, None, "Invalid API key", hint=hint)
        return Caller(role=str(apikey_claims["role"]), claims=apikey_claims)
    try:
        claims = verify_token(token, keys.jwt_secret)
    except TokenError as exc:
        code, message = ("PGRST303", "JWT expired") if exc.expired else ("PGRST301", exc.message)
        header = f'Bearer error="invalid_token", error_description="{message}"'
        raise PgrstError(401, code, message, headers={"WWW-Authenticate": header}) from None
    return Caller(role=str(claims["role"]), claims=claims)


def check_profile(request: Request) -> None:
    for header in ("accept-profile", "content-profile"):
        profile = request.headers.get(header)
        if profile is not None and profile != SCHEMA:
            raise PgrstError(
                406,
                "PGRST106",
                f"Invalid schema: {profile}",
                hint=f"Only the following schemas are exposed: {SCHEMA}",
            )


def parse_prefer(request: Request) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key:
                prefs[key] = value
    return prefs


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise PgrstError(400, "PGRST102", "Empty or invalid json") from None


def content_range(offset: int, rows: int, total: int | None) -> str:
    size = "*" if total is None else str(total)
    return f"{offset}-{offset + rows - 1}/{size}" if rows else f"*/{size}"


class RestApi:
    """Request handlers bound to one database and one project's keys."""

    def __init__(self, pool: Pool, keys: ProjectKeys, max_rows: int = 1000) -> None:
        self.pool = pool
        self.keys = keys
        self.max_rows = max_rows

    async def table(self, request: Request) -> Response:
        """GET/HEAD/POST/PATCH/DELETE /rest/v1/<table>."""
        try:
            caller = authenticate(request, self.keys)
            check_profile(request)
            return await self._table(request, caller, request.path_params["table"])
        except PgrstError as exc:
            return exc.response()

    async def rpc(self, request: Request) -> Response:
        """POST /rest/v1/rpc/<function> with the named arguments as a JSON object."""
        try:
            caller = authenticate(request, self.keys)
            check_profile(request)
            return await self._rpc(request, caller, request.path_params["function"])
        except PgrstError as exc:
            return exc.response()

    async def _run(self, caller: Caller, method: str, work: Any) -> Any:
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    if method in ("GET", "HEAD"):
                        await conn.execute("set transaction read only")
                    await conn.execute(
                        "select set_config('role', %s, true),"
                        " set_config('request.jwt.claims', %s, true),"
                        " set_config('request.method', %s, true)",
                        [caller.role, json.dumps(caller.claims), method],
                    )
                    return await work(conn)
            except psycopg.Error as exc:
                raise pg_error(exc, caller.role) from None

    async def _relation_exists(self, conn: psycopg.AsyncConnection, name: str) -> bool:
        cur = await conn.execute("select to_regclass(%s) is not null", [f'{SCHEMA}."{name}"'])
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _table(self, request: Request, caller: Caller, name: str) -> Response:
        method = request.method
        prefer = parse_prefer(request)
        params = request.query_params
        table = sql.Identifier(SCHEMA, name)
        conditions = [
            parse_filter(key, value)
            for key, value in params.multi_items()
            if key not in RESERVED_PARAMS
        ]
        where = sql.SQL(" and ").join(conditions) if conditions else sql.SQL("true")
        columns = parse_select(params.get("select", "*"))
        body = await read_json(request) if method in ("POST", "PATCH") else None

        async def work(conn: psycopg.AsyncConnection) -> Response:
            if not await self._relation_exists(conn, name):
                raise PgrstError(
                    404,
                    "PGRST205",
                    f"Could not find the table '{SCHEMA}.{name}' in the schema cache",
                )
            if method in ("GET", "HEAD"):
                return await self._read(conn, request, prefer, table, where, columns)
            if method == "POST":
                return await self._insert(conn, request, prefer, table, name, columns, body)
            return await self._mutate(conn, request, prefer, table, where, columns, body)

        return await self._run(caller, method, work)

    async def _read(self, conn, request, prefer, table, where, columns) -> Response:
        params = request.query_params
        offset = int(params.get("offset", "0"))
        limit = min(int(params.get("limit", self.max_rows)), self.max_rows)
        order = parse_order(params.get("order"))
        query = sql.SQL(
            "select {cols} from {table} as _t where {where}{order} limit {limit} offset {offset}"
        ).format(
            cols=columns,
            table=table,
            where=where,
            order=order,
            limit=sql.Literal(limit),
            offset=sql.Literal(offset),
        )
        text, rows = await self._aggregate(conn, query)
        total = None
        if prefer.get("count") in ("exact", "planned", "estimated"):
            count = sql.SQL("select count(*) from {table} as _t where {where}")
            cur = await conn.execute(count.format(table=table, where=where))
            total = (await cur.fetchone())[0]
        status = 206 if total is not None and offset + rows < total else 200
        headers = {"Content-Range": content_range(offset, rows, total)}
        return self._respond(request, status, text, rows, headers)

    async def _aggregate(
        self, conn, query: sql.Composable, source: sql.Composable | None = None
    ) -> tuple[str, int]:
        # A data-modifying CTE must sit at the top level, so it is passed apart as `source`.
        prefix = sql.SQL("with _pgrst_source as ({}) ").format(source) if source else sql.SQL("")
        wrapped = sql.SQL(
            "{prefix}select coalesce(json_agg(_pgrst_t), '[]')::text, count(*)"
            " from ({query}) _pgrst_t"
        ).format(prefix=prefix, query=query)
        cur = await conn.execute(wrapped)
        text, rows = await cur.fetchone()
        return text, rows

    async def _insert(self, conn, request, prefer, table, name, columns, body) -> Response:
        rows = body if isinstance(body, list) else [body]
        if not all(isinstance(row, dict) for row in rows):
            raise PgrstError(400, "PGRST102", "Empty or invalid json")
        wanted = request.query_params.get("columns")
        keys = [k.strip().strip('"') for k in wanted.split(",")] if wanted else []
        keys = keys or list(dict.fromkeys(key for row in rows for key in row))
        cols = sql.SQL(", ").join(sql.Identifier(key) for key in keys)
        conflict = await self._on_conflict(conn, request, prefer, name, keys)
        mutation = sql.SQL(
            "insert into {table} as _t ({cols}) select {cols}"
            " from json_populate_recordset(null::{table}, {body}){conflict} returning _t.*"
        ).format(table=table, cols=cols, body=sql.Literal(Json(rows)), conflict=conflict)
        return await self._returning(conn, request, prefer, mutation, columns, insert=True)

    async def _on_conflict(self, conn, request, prefer, name, keys) -> sql.Composable:
        resolution = prefer.get("resolution")
        if resolution not in ("merge-duplicates", "ignore-duplicates"):
            return sql.SQL("")
        target = request.query_params.get("on_conflict")
        if target:
            conflict_cols = [c.strip() for c in target.split(",")]
        else:
            cur = await conn.execute(
                "select a.attname from pg_index i join pg_attribute a"
                " on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
                " where i.indrelid = to_regclass(%s) and i.indisprimary",
                [f'{SCHEMA}."{name}"'],
            )
            conflict_cols = [row[0] for row in await cur.fetchall()]
        target_sql = sql.SQL(", ").join(sql.Identifier(c) for c in conflict_cols)
        if resolution == "ignore-duplicates":
            return sql.SQL(" on conflict ({}) do nothing").format(target_sql)
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(k)) for k in keys
        )
        return sql.SQL(" on conflict ({}) do update set {}").format(target_sql, sets)

    async def _mutate(self, conn, request, prefer, table, where, columns, body) -> Response:
        if request.method == "DELETE":
            mutation = sql.SQL("delete from {table} as _t where {where} returning _t.*").format(
                table=table, where=where)  # fmt: skip
        else:
            if not isinstance(body, dict):
                raise PgrstError(400, "PGRST102", "Empty or invalid json")
            if not body:
                mutation = sql.SQL("select * from {table} as _t where false").format(table=table)
            else:
                sets = sql.SQL(", ").join(
                    sql.SQL("{c} = _b.{c}").format(c=sql.Identifier(k)) for k in body
                )
                mutation = sql.SQL(
                    "update {table} as _t set {sets}"
                    " from (select * from json_populate_record(null::{table}, {body})) as _b"
                    " where {where} returning _t.*"
                ).format(table=table, sets=sets, body=sql.Literal(Json(body)), where=where)
        return await self._returning(conn, request, prefer, mutation, columns, insert=False)

    async def _returning(self, conn, request, prefer, mutation, columns, *, insert) -> Response:
        query = sql.SQL("select {cols} from _pgrst_source as _t").format(cols=columns)
        text, rows = await self._aggregate(conn, query, source=mutation)
        total = rows if prefer.get("count") == "exact" else None
        size = "*" if total is None else str(total)
        if insert or not rows:
            headers = {"Content-Range": f"*/{size}"}
        else:
            headers = {"Content-Range": f"0-{rows - 1}/{size}"}
        applied = [f"{k}={prefer[k]}" for k in ("return", "count", "resolution") if k in prefer]
        if applied:
            headers["Preference-Applied"] = ",".join(applied)
        if prefer.get("return") != "representation":
            return Response(status_code=201 if insert else 204, headers=headers)
        return self._respond(request, 201 if insert else 200, text, rows, headers)

    def _respond(self, request: Request, status: int, text: str, rows: int, headers) -> Response:
        if SINGLE_OBJECT in request.headers.get("accept", ""):
            if rows != 1:
                message = "Cannot coerce the result to a single JSON object"
                raise PgrstError(406, "PGRST116", message, f"The result contains {rows} rows")
            text = json.dumps(json.loads(text)[0])
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return Response(text, status, headers=headers, media_type=JSON_TYPE)

    async def _rpc(self, request: Request, caller: Caller, name: str) -> Response:
        args = await read_json(request)
        if not isinstance(args, dict):
            raise PgrstError(400, "PGRST102", "Empty or invalid json")

        async def work(conn: psycopg.AsyncConnection) -> Response:
            signature = await self._function(conn, name, set(args))
            call = sql.SQL("{fn}({args})").format(
                fn=sql.Identifier(SCHEMA, name),
                args=sql.SQL(", ").join(
                    sql.SQL("{} => {}::{}").format(
                        sql.Identifier(arg), sql.Literal(_rpc_value(args[arg], kind)), sql.SQL(kind)
                    )
                    for arg, kind in signature["args"].items()
                    if arg in args
                ),
            )
            if signature["returns_rows"]:
                text, rows = await self._aggregate(conn, sql.SQL("select * from {}").format(call))
                if not signature["returns_set"]:
                    text = json.dumps((json.loads(text) or [None])[0])
                headers = {"Content-Range": content_range(0, rows, None)}
                return self._respond(request, 200, text, rows, headers)
            cur = await conn.execute(sql.SQL("select to_json({})::text").format(call))
            row = await cur.fetchone()
            assert row is not None  # a select without FROM always yields one row
            return Response(row[0], 200, media_type=JSON_TYPE)

        return await self._run(caller, "POST", work)

    async def _function(self, conn, name: str, given: set[str]) -> dict[str, Any]:
        cur = await conn.execute(
            "select p.proargnames, p.proargmodes, p.proargtypes::regtype[]::text[], p.proretset,"
            " t.typtype, p.prorettype = 'record'::regtype"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " join pg_type t on t.oid = p.prorettype where n.nspname = %s and p.proname = %s",
            [SCHEMA, name],
        )
        for names, modes, types, retset, typtype, is_record in await cur.fetchall():
            in_names = [n for i, n in enumerate(names or []) if not modes or modes[i] in "ibv"]
            if given <= set(in_names):
                return {
                    "args": dict(zip(in_names, types, strict=False)),
                    "returns_set": retset,
                    "returns_rows": typtype == "c" or is_record,
                }
        listed = ", ".join(sorted(given))
        message = f"Could not find the function {SCHEMA}.{name}({listed}) in the schema cache"
        raise PgrstError(404, "PGRST202", message)


def _rpc_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind in ("json", "jsonb"):
        return Jsonb(value)
    if kind.endswith("[]"):
        return [None if v is None else str(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
