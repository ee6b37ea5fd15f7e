"""Doctor checks of the SQLite file (the embedded store, and the local queue beside it)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from pathlib import Path

from core.doctor import Check, CheckResult, Probe, failed, passed
from core.sqlite_file import is_busy

MIN_FREE_BYTES = 100 * 1024 * 1024
LOCK_WAIT = 1.0
_MOVE = "set VIDEOQ_DB to a file in a directory this user can write"


async def sqlite_directory(probe: Probe) -> CheckResult:
    """The database file's directory exists (or can be made) and this user can write in it."""
    return await asyncio.to_thread(_directory, probe.settings.db_path)


async def sqlite_file(probe: Probe) -> CheckResult:
    """The database file, if it exists already, opens and takes a write lock."""
    return await asyncio.to_thread(_file, probe.settings.db_path)


async def disk_space(probe: Probe) -> CheckResult:
    """The disk that holds the database has room to grow."""
    return await asyncio.to_thread(_disk_space, probe.settings.db_path)


def _directory(db_path: Path) -> CheckResult:
    name = "sqlite directory"
    directory = db_path.parent
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        return failed(name, f"{existing} (on the way to VIDEOQ_DB) is not a directory", _MOVE)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return failed(name, f"cannot write in {existing} ({_os_reason(exc)})", _MOVE)
    if existing != directory:
        return passed(name, f"{directory} will be created (in writable {existing})")
    return passed(name, f"{directory} is writable")


def _file(db_path: Path) -> CheckResult:
    name = "sqlite file"
    if not db_path.exists():
        return passed(name, f"{db_path} does not exist yet: the first command creates it")
    try:
        connection = sqlite3.connect(
            f"{db_path.resolve().as_uri()}?mode=rw", uri=True, timeout=LOCK_WAIT
        )
    except sqlite3.Error as exc:
        return failed(name, f"{db_path} does not open ({exc})", _MOVE)
    try:
        connection.execute("begin immediate")  # takes the write lock without writing anything
        connection.execute("rollback")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            return failed(
                name,
                f"{db_path} stayed locked for {LOCK_WAIT:g} s",
                "see which process holds it (a stuck videoq?) and stop it",
            )
        return failed(name, f"{db_path} does not accept a write ({exc})", _MOVE)
    except sqlite3.DatabaseError as exc:
        return failed(name, f"{db_path} is not a usable SQLite file ({exc})", _MOVE)
    finally:
        connection.close()
    return passed(name, f"{db_path} opens and accepts a write")


def _disk_space(db_path: Path) -> CheckResult:
    name = "disk space"
    existing = _nearest_existing(db_path.parent)
    if not existing.is_dir():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    text = f"{free / 1024**3:.1f} GB free on the disk of {existing}"
    if free < MIN_FREE_BYTES:
        return failed(name, f"only {text}", "free some space, or set VIDEOQ_DB to a roomier disk")
    return passed(name, text)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


CHECKS: list[Check] = [sqlite_directory, sqlite_file, disk_space]
