"""Doctor checks of QStash: the token, the signing keys, the public URL, and a signed delivery
to our own worker endpoint (the one thing that proves QStash's deliveries will be accepted)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx

from core import signing
from core.doctor import (
    Check,
    CheckResult,
    Probe,
    Service,
    Trouble,
    failed,
    json_object,
    passed,
    skipped,
)
from core.models import WorkMessage
from core.queue.qstash import api_base_url
from core.urls import is_local_qstash, is_private_url

CURRENT = "QSTASH_CURRENT_SIGNING_KEY"
NEXT = "QSTASH_NEXT_SIGNING_KEY"
CONSOLE = "copy it from the Upstash console (QStash → Overview)"


async def qstash_token(probe: Probe) -> CheckResult:
    """QStash accepts QSTASH_TOKEN."""
    name = "qstash token"
    answer = await _keys(probe)
    if isinstance(answer, Trouble):
        return answer.result(name)
    return passed(name, f"QSTASH_TOKEN accepted by {api_base_url(probe.settings.qstash_url)}")


async def signing_keys(probe: Probe) -> CheckResult:
    """Both signing keys are set, differ, and are the ones QStash signs with."""
    name = "signing keys"
    current, following = _configured_keys(probe)
    missing = [var for var, value in ((CURRENT, current), (NEXT, following)) if not value]
    if missing:
        return failed(name, f"{' and '.join(missing)} not set", f"{CONSOLE} into {missing[0]}")
    if hmac.compare_digest(current.encode(), following.encode()):
        return failed(name, f"{CURRENT} and {NEXT} are the same key", f"{CONSOLE} into {NEXT}")
    answer = await _keys(probe)
    if isinstance(answer, Trouble):
        return passed(name, "both set and different (QStash did not say which it uses)")
    for var, mine, theirs in (
        (CURRENT, current, answer.get("current")),
        (NEXT, following, answer.get("next")),
    ):
        if not isinstance(theirs, str) or not hmac.compare_digest(mine.encode(), theirs.encode()):
            return failed(
                name, f"{var} is not the key QStash has for this token", f"{CONSOLE} into {var}"
            )
    return passed(name, "both set, different, and the ones QStash signs with")


async def public_url(probe: Probe) -> CheckResult:
    """VIDEOQ_PUBLIC_URL is an https URL QStash can reach (a local dev server may use anything)."""
    name = "public url"
    settings = probe.settings
    if is_local_qstash(settings.qstash_url):
        return passed(name, "QSTASH_URL is a local dev server: any VIDEOQ_PUBLIC_URL will do")
    fix = (
        "set VIDEOQ_PUBLIC_URL to the https URL where `videoq serve` is reachable from the internet"
    )
    if urlsplit(settings.public_url).scheme != "https":
        return failed(name, "VIDEOQ_PUBLIC_URL is not https, and QStash is real", fix)
    if is_private_url(settings.public_url):
        return failed(name, "VIDEOQ_PUBLIC_URL is this machine or a private network", fix)
    return passed(name, f"QStash delivers to {settings.worker_url}")


async def worker_self_test(probe: Probe) -> CheckResult:
    """A delivery signed like QStash's is accepted by the worker endpoint, when `serve` runs."""
    name = "worker self-test"
    settings = probe.settings
    current, _ = _configured_keys(probe)
    if not current:
        return skipped(name, f"not tried: {CURRENT} is not set")
    try:
        health = await probe.http.get(settings.public_url + "/healthz")
    except httpx.HTTPError:
        health = None
    if health is None or health.status_code != 200:
        return skipped(
            name,
            "not tried: nothing healthy answers at VIDEOQ_PUBLIC_URL",
            "start `videoq serve` there and run `videoq doctor` again",
        )
    return await _deliver(probe, current)


async def _deliver(probe: Probe, key: str) -> CheckResult:
    name = "worker self-test"
    url = probe.settings.worker_url
    # A task id that never exists: the worker verifies, finds nothing and acknowledges.
    message = WorkMessage(task_id="doctor-" + secrets.token_hex(8), attempt=1, step="poll", seq=1)
    body = message.to_bytes()
    headers = {
        "Upstash-Signature": signing.sign(body, key, url),
        "Content-Type": "application/json",
    }
    try:
        response = await probe.http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return failed(
            name, f"the worker endpoint did not answer ({type(exc).__name__})", "see its log"
        )
    if response.status_code == 401:
        return failed(
            name,
            f"the worker refused a delivery signed with {CURRENT} (401)",
            "`videoq serve` there runs with other signing keys or another VIDEOQ_PUBLIC_URL: "
            "give both the same settings",
        )
    if not response.is_success:
        return failed(
            name, f"the worker answered {response.status_code}", "see the log of `videoq serve`"
        )
    return passed(name, f"{url} accepted a signed delivery")


def _configured_keys(probe: Probe) -> tuple[str, str]:
    settings = probe.settings
    current, following = settings.qstash_current_signing_key, settings.qstash_next_signing_key
    return (
        current.get_secret_value() if current else "",
        following.get_secret_value() if following else "",
    )


async def _keys(probe: Probe) -> dict[str, Any] | Trouble:
    """QStash's own signing keys (`GET /v2/keys`), or why it would not say."""
    return await probe.once("qstash-keys", lambda: _fetch_keys(probe))


async def _fetch_keys(probe: Probe) -> dict[str, Any] | Trouble:
    settings = probe.settings
    base = api_base_url(settings.qstash_url)
    assert settings.qstash_token is not None
    service = Service(
        f"QStash at {base}",
        "QSTASH_TOKEN",
        refused_fix=f"{CONSOLE} into QSTASH_TOKEN",
        down_fix="check QSTASH_URL and the network",
    )
    headers = {"Authorization": f"Bearer {settings.qstash_token.get_secret_value()}"}
    missing = Trouble(f"{base} has no QStash keys API", "check QSTASH_URL")
    return await json_object(
        probe, service, "GET", base + "/v2/keys", missing=missing, headers=headers
    )


CHECKS: list[Check] = [qstash_token, signing_keys, public_url, worker_self_test]
