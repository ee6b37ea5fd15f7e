"""What the fake Realtime needs from the catalog: columns, keys, RLS, publication, grants."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.fakes.supabase.bindings import Change, TableMeta
from tests.fakes.supabase.pool import Pool


class Catalog:
    """Cached table facts, and the per-role checks realtime.apply_rls makes for each change."""

    def __init__(self, pool: Pool, admin: Pool) -> None:
        self.pool = pool
        self.admin = admin
        self._meta: dict[tuple[str, str], TableMeta] = {}
        self._columns: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        self._bypass: dict[str, bool] = {}

    def forget(self) -> None:
        """Drop cached facts (after DDL)."""
        self._meta.clear()
        self._columns.clear()
        self._bypass.clear()

    async def table_meta(self, schema: str, table: str) -> TableMeta:
        key = (schema, table)
        if key not in self._meta:
            self._meta[key] = await self._load_meta(schema, table)
        return self._meta[key]

    async def _load_meta(self, schema: str, table: str) -> TableMeta:
        async with self.admin.connection() as conn:
            cur = await conn.execute(
                "select c.relreplident = 'f', c.relrowsecurity,"
                " exists(select 1 from pg_publication_tables p"
                "        where p.pubname = 'supabase_realtime'"
                "        and p.schemaname = %s and p.tablename = %s),"
                " array(select a.attname from pg_index i join pg_attribute a on a.attrelid = c.oid"
                "       and a.attnum = any(i.indkey) where i.indrelid = c.oid and i.indisprimary)"
                " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = %s and c.relname = %s",
                [schema, table, schema, table],
            )
            row = await cur.fetchone()
            if row is None:
                return TableMeta([], [], False, False, False)
            cur = await conn.execute(
                "select a.attname, t.typname from pg_attribute a"
                " join pg_type t on t.oid = a.atttypid"
                " where a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
                " and a.attnum > 0 and not a.attisdropped order by a.attnum",
                [schema, table],
            )
            columns = [(name, typname) for name, typname in await cur.fetchall()]
        return TableMeta(columns, list(row[3]), row[0], row[1], row[2])

    async def selectable(self, role: str, schema: str, table: str) -> list[tuple[str, str]]:
        key = (role, schema, table)
        if key not in self._columns:
            meta = await self.table_meta(schema, table)
            async with self.admin.connection() as conn:
                cur = await conn.execute(
                    "select a.attname from pg_attribute a"
                    " where a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
                    " and a.attnum > 0 and not a.attisdropped"
                    " and has_column_privilege(%s, a.attrelid, a.attname, 'SELECT')",
                    [schema, table, role],
                )
                allowed = {name for (name,) in await cur.fetchall()}
            self._columns[key] = [(n, t) for n, t in meta.columns if n in allowed]
        return self._columns[key]

    async def visible(
        self, role: str, claims: dict[str, Any], change: Change, meta: TableMeta
    ) -> bool:
        # realtime.apply_rls: DELETE skips RLS; other rows must be readable now by the role.
        if change.op == "DELETE" or not meta.rls or await self._bypasses_rls(role):
            return True
        keys = {key: (change.record or {}).get(key) for key in meta.primary_key}
        where = " and ".join(f'"{key}"::text = %s' for key in keys)
        query = f'select exists(select 1 from "{change.schema}"."{change.table}" where {where})'
        async with self.pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(
                    "select set_config('role', %s, true),"
                    " set_config('request.jwt.claims', %s, true)",
                    [role, json.dumps(claims)],
                )
                try:
                    cur = await conn.execute(query, [str(v) for v in keys.values()])
                except psycopg.Error:
                    return False
                row = await cur.fetchone()
        return bool(row and row[0])

    async def _bypasses_rls(self, role: str) -> bool:
        if role not in self._bypass:
            async with self.admin.connection() as conn:
                cur = await conn.execute(
                    "select rolbypassrls or rolsuper from pg_roles where rolname = %s", [role]
                )
                row = await cur.fetchone()
            self._bypass[role] = bool(row and row[0])
        return self._bypass[role]
