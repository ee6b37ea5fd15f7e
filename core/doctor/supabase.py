"""Doctor checks of the Supabase store: the URL, the key's kind, the schema, realtime, writes.

PostgREST cannot show a publication or try a write without leaving a row, so the schema brings
a function, `videoq_doctor()`, that answers all three from inside the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt

from core.doctor import Check, CheckResult, Probe, Service, Trouble, failed, json_object, passed
from core.urls import is_private_url

KEY = "SUPABASE_SERVICE_ROLE_KEY"
RUN_SCHEMA = "run the SQL that `videoq schema` prints in the project's SQL editor"
PROJECT = Service(
    "SUPABASE_URL",
    KEY,
    refused_fix=f"set {KEY} to this project's service_role or secret key",
    down_fix="see whether the project is up and SUPABASE_URL is its URL",
)
_LEGACY_PREFIX = "eyJ"
_SECRET_PREFIX = "sb_secret_"


async def supabase_url(probe: Probe) -> CheckResult:
    """SUPABASE_URL is an https project URL (plain http only for a local stack)."""
    name = "supabase url"
    url = probe.settings.supabase_url or ""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return failed(
            name, "SUPABASE_URL is not an http(s) URL", "set it to https://<ref>.supabase.co"
        )
    if parts.scheme == "http" and not is_private_url(url):
        return failed(
            name,
            f"SUPABASE_URL sends {KEY} unencrypted to {parts.hostname}",
            "use the project's https:// URL",
        )
    return passed(name, f"SUPABASE_URL points at {parts.hostname}")


async def supabase_key(probe: Probe) -> CheckResult:
    """SUPABASE_SERVICE_ROLE_KEY is a legacy service_role JWT or a new `sb_secret_` key."""
    name = "supabase key"
    secret = probe.settings.supabase_service_role_key
    key = secret.get_secret_value().strip() if secret else ""
    fix = (
        f"copy the service_role (legacy) or secret key from Project Settings → API Keys into {KEY}"
    )
    if key.startswith(_SECRET_PREFIX):
        return passed(name, f"{KEY} is a secret key (sb_secret_…)")
    if key.startswith("sb_publishable_"):
        return failed(name, f"{KEY} is a publishable key, which cannot write tasks", fix)
    if not key.startswith(_LEGACY_PREFIX):
        return failed(name, f"{KEY} is neither a legacy JWT (eyJ…) nor a secret key", fix)
    try:
        claims = jwt.decode(key, options={"verify_signature": False, "verify_exp": True})
    except jwt.ExpiredSignatureError:
        return failed(name, f"{KEY} has expired", fix)
    except jwt.PyJWTError:
        return failed(name, f"{KEY} starts like a JWT but is not one", fix)
    role = claims.get("role")
    if role != "service_role":
        return failed(name, f"{KEY} is a JWT for role {str(role)[:32]!r}, not service_role", fix)
    return passed(name, f"{KEY} is a legacy JWT with role service_role")


async def supabase_tables(probe: Probe) -> CheckResult:
    """The videoq tables exist in the project."""
    return await _judge(probe, "supabase tables", _tables)


async def realtime_publication(probe: Probe) -> CheckResult:
    """video_tasks is in the supabase_realtime publication, so dashboards get live changes."""
    return await _judge(probe, "realtime publication", _publication)


async def service_role_write(probe: Probe) -> CheckResult:
    """The key's role may insert a task (a probe row, rolled back at once)."""
    return await _judge(probe, "service role write", _write)


def _tables(name: str, report: dict[str, Any]) -> CheckResult:
    missing = [table for table in ("video_tasks", "task_events") if not report.get(table)]
    if missing:
        return failed(name, f"missing: {', '.join(missing)}", RUN_SCHEMA)
    return passed(name, "video_tasks and task_events exist")


def _publication(name: str, report: dict[str, Any]) -> CheckResult:
    if not report.get("realtime"):
        return failed(name, "video_tasks is not in the supabase_realtime publication", RUN_SCHEMA)
    return passed(name, "supabase_realtime publishes video_tasks")


def _write(name: str, report: dict[str, Any]) -> CheckResult:
    role = str(report.get("role", "?"))[:32]
    if report.get("write") != "ok":
        reason = str(report.get("write"))[:120]
        return failed(name, f"role {role} cannot insert into video_tasks: {reason}", RUN_SCHEMA)
    return passed(name, f"role {role} can write tasks")


async def _judge(
    probe: Probe, name: str, verdict: Callable[[str, dict[str, Any]], CheckResult]
) -> CheckResult:
    """`verdict` on what `videoq_doctor()` says (asked once for all three checks)."""
    report = await probe.once("supabase", lambda: _call_doctor(probe))
    return report.result(name) if isinstance(report, Trouble) else verdict(name, report)


async def _call_doctor(probe: Probe) -> dict[str, Any] | Trouble:
    settings = probe.settings
    assert settings.supabase_url and settings.supabase_service_role_key
    url = settings.supabase_url.rstrip("/") + "/rest/v1/rpc/videoq_doctor"
    key = settings.supabase_service_role_key.get_secret_value().strip()
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Profile": "public"}
    outdated = Trouble("the videoq schema is missing or older than this videoq", RUN_SCHEMA)
    return await json_object(
        probe, PROJECT, "POST", url, missing=outdated, json={}, headers=headers
    )


CHECKS: list[Check] = [
    supabase_url,
    supabase_key,
    supabase_tables,
    realtime_publication,
    service_role_write,
]
