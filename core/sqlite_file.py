"""How videoq opens its SQLite file, which the task store and the local queue share."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.errors import StoreError


def connect(path: Path, busy_timeout: float, *, cached_statements: int = 128) -> sqlite3.Connection:
    """A connection in autocommit mode (callers BEGIN themselves), in WAL mode, waiting on locks."""
    try:
        db = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout, cached_statements=cached_statements
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the SQLite file: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        # WAL with NORMAL survives a crashed process; only a power cut may lose the last commits.
        db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db
