"""`videoq doctor`: checks of the configuration, one small function per check.

A check names the variables it looked at, never their values: its result may be pasted into
an issue or a chat. Every network call has a short timeout and every check a deadline, so one
dead service costs seconds, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from core.config import Settings

log = logging.getLogger(__name__)

HTTP_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
CHECK_DEADLINE = 8.0


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report: what was checked, whether it passed, what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trouble:
    """Why an answer several checks share could not be had; each check reports it as its own."""

    detail: str
    fix: str

    def result(self, name: str) -> CheckResult:
        return failed(name, self.detail, self.fix)


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def skipped(name: str, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, True, detail, fix, skipped=True)


@dataclass
class Probe:
    """What every check gets: the settings, one HTTP client, and answers shared between checks."""

    settings: Settings
    http: httpx.AsyncClient
    _shared: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    def once(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        """The answer of `fetch`, asked for only once however many checks need it."""
        if key not in self._shared:
            self._shared[key] = asyncio.ensure_future(fetch())
        return asyncio.shield(self._shared[key])

    def abandon(self) -> None:
        """Cancel shared answers still pending (their checks ran out of time)."""
        for task in self._shared.values():
            task.cancel()


Check = Callable[[Probe], Awaitable[CheckResult]]


@dataclass(frozen=True)
class Service:
    """How the report names a remote service, the variable that signs in to it, and the fixes."""

    name: str
    credential: str
    refused_fix: str
    down_fix: str


async def json_object(
    probe: Probe, service: Service, method: str, url: str, *, missing: Trouble, **request: Any
) -> dict[str, Any] | Trouble:
    """The JSON object `service` answers at `url`, or the Trouble that kept it from answering."""
    try:
        response = await probe.http.request(method, url, **request)
    except httpx.HTTPError as exc:
        return Trouble(f"{service.name} did not answer ({type(exc).__name__})", service.down_fix)
    code = response.status_code
    if code in {401, 403}:
        return Trouble(f"{service.name} refused {service.credential} ({code})", service.refused_fix)
    if code == 404:
        return missing
    if code != 200:
        return Trouble(f"{service.name} answered {code}", service.down_fix)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return Trouble(f"{service.name} answered something unexpected", service.down_fix)
    return answer


def plan(settings: Settings) -> list[Check]:
    """The checks that apply to the backends `settings` select, in report order."""
    from core.doctor import access, backends, qstash, sqlite, supabase

    checks: list[Check] = [backends.store, backends.queue, backends.upstream]
    if settings.uses_supabase:
        checks += supabase.CHECKS
    if not settings.uses_supabase or not settings.uses_qstash:
        checks += sqlite.CHECKS  # the local queue lives in the SQLite file too
    if settings.uses_qstash:
        checks += qstash.CHECKS
    return checks + [access.sign_in, access.secret_key]


async def run_checks(settings: Settings, *, timeout: float = CHECK_DEADLINE) -> list[CheckResult]:
    """Run every check that applies, at once, each within `timeout` seconds."""
    checks = plan(settings)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        probe = Probe(settings, http)
        try:
            return list(await asyncio.gather(*(_bounded(c, probe, timeout) for c in checks)))
        finally:
            probe.abandon()


def check_name(check: Check) -> str:
    """A check's name in the report: its function's name, in words."""
    return check.__name__.replace("_", " ")


async def _bounded(check: Check, probe: Probe, timeout: float) -> CheckResult:
    name = check_name(check)
    try:
        return await asyncio.wait_for(check(probe), timeout)
    except TimeoutError:
        return failed(name, f"no answer within {timeout:g} s", "see whether the service is up")
    except Exception as exc:  # noqa: BLE001 - a broken check must not hide the others
        # The type only: an exception's text may quote a value from the settings.
        log.debug("doctor check %s crashed", name, exc_info=True)
        return failed(name, f"the check itself failed ({type(exc).__name__})", "report a bug")
