"""The SQL that sets up a Supabase project for videoq (`videoq schema` prints it)."""

from __future__ import annotations

from importlib.resources import files


def schema_sql() -> str:
    """The migration text: tables, checks, indexes, trigger, RLS, functions and publication."""
    return files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
