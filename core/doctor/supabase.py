"""Doctor checks of the Supabase store: the URL, the key's kind, the schema, realtime, writes.

PostgREST cannot show a publication or try a write without leaving a row, so the schema brings
a function, `videoq_doctor()`, that answers all three from inside the database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from core.doctor import Check, CheckResult, Probe, Trouble, failed, passed
from core.urls import is_private_url

KEY = "SUPABASE_SERVICE_ROLE_KEY"
RUN_SCHEMA = "run the SQL that `videoq schema` prints in the project's SQL editor"
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
    name = "supabase tables"
    report = await _report(probe)
    if isinstance(report, Trouble):
        return report.result(name)
    missing = [table for table in ("video_tasks", "task_events") if not report.get(table)]
    if missing:
        return failed(name, f"missing: {', '.join(missing)}", RUN_SCHEMA)
    return passed(name, "video_tasks and task_events exist")


async def realtime_publication(probe: Probe) -> CheckResult:
    """video_tasks is in the supabase_realtime publication, so dashboards get live changes."""
    name = "realtime publication"
    report = await _report(probe)
    if isinstance(report, Trouble):
        return report.result(name)
    if not report.get("realtime"):
        return failed(name, "video_tasks is not in the supabase_realtime publication", RUN_SCHEMA)
    return passed(name, "supabase_realtime publishes video_tasks")


async def service_role_write(probe: Probe) -> CheckResult:
    """The key's role may insert a task (a probe row, rolled back at once)."""
    name = "service role write"
    report = await _report(probe)
    if isinstance(report, Trouble):
        return report.result(name)
    role = str(report.get("role", "?"))[:32]
    if report.get("write") != "ok":
        reason = str(report.get("write"))[:120]
        return failed(name, f"role {role} cannot insert into video_tasks: {reason}", RUN_SCHEMA)
    return passed(name, f"role {role} can write tasks")


async def _report(probe: Probe) -> dict[str, Any] | Trouble:
    """What `videoq_doctor()` says, or the failure that kept it from answering."""
    return await probe.once("supabase", lambda: _call_doctor(probe))


async def _call_doctor(probe: Probe) -> dict[str, Any] | Trouble:
    settings = probe.settings
    assert settings.supabase_url and settings.supabase_service_role_key
    url = settings.supabase_url.rstrip("/") + "/rest/v1/rpc/videoq_doctor"
    key = settings.supabase_service_role_key.get_secret_value().strip()
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Profile": "public"}
    try:
        response = await probe.http.post(url, json={}, headers=headers)
    except httpx.HTTPError as exc:
        return Trouble(
            ,
            f"SUPABASE_URL did not answer ({type(exc).__name__})",
            "see whether the project is up",
        )
    if response.status_code in {401, 403}:
        return Trouble(
            ,
            f"SUPABASE_URL refused {KEY} ({response.status_code})",
            f"set {KEY} to this project's service_role or secret key",
        )
    if response.status_code == 404:
        return Trouble("the videoq schema is missing or older than this videoq", RUN_SCHEMA)
    if response.status_code != 200:
        return Trouble(f"SUPABASE_URL answered {response.status_code}", "see the project's logs")
    try:
        report = response.json()
    except ValueError:
        return Trouble("SUPABASE_URL answered something that is not JSON", "check SUPABASE_URL")
    if not isinstance(report, dict):
        return Trouble("videoq_doctor() answered an unexpected shape", RUN_SCHEMA)
    return report


CHECKS: list[Check] = [
    supabase_url,
    supabase_key,
    supabase_tables,
    realtime_publication,
    service_role_write,
]
