"""Doctor checks of who may use the service: task-API sign-in and the BYOK server secret."""

from __future__ import annotations

import httpx

from core.crypto import key_box_for
from core.doctor import CheckResult, Probe, failed, passed, skipped
from core.errors import ConfigError

SIGN_IN_FIX = "set SUPABASE_JWT_SECRET (Project Settings → JWT) or SUPABASE_URL / SUPABASE_JWKS_URL"


async def sign_in(probe: Probe) -> CheckResult:
    """The task API can verify users: a JWT secret, or a JWKS that answers with keys."""
    settings = probe.settings
    if settings.supabase_jwt_secret is not None:
        return passed("sign in", "HS256 user tokens are verified with SUPABASE_JWT_SECRET")
    if settings.jwks_url is None:
        if settings.uses_supabase or settings.uses_qstash:
            return failed(
                "sign in", "the task API cannot verify users: it refuses every call", SIGN_IN_FIX
            )
        return skipped("sign in", "not configured (needed only for web clients of `videoq serve`)")
    problem = await _jwks_problem(probe.http, settings.jwks_url)
    if problem:
        return failed("sign in", f"the JWKS at {settings.jwks_url} {problem}", SIGN_IN_FIX)
    return passed("sign in", f"user tokens are verified with the keys at {settings.jwks_url}")


async def secret_key(probe: Probe) -> CheckResult:
    """VIDEOQ_SECRET_KEY, when set, can encrypt users' own upstream keys (BYOK)."""
    settings = probe.settings
    if settings.secret_key is None:
        if settings.uses_simulator:
            return skipped("secret key", "BYOK is off: the simulator uses no upstream keys")
        return passed(
            "secret key",
            "VIDEOQ_SECRET_KEY not set: the task API refuses users' own upstream keys",
        )
    try:
        key_box_for(settings)
    except ConfigError as exc:
        return failed("secret key", exc.message, "set VIDEOQ_SECRET_KEY to a long random string")
    return passed("secret key", "VIDEOQ_SECRET_KEY can encrypt users' own upstream keys")


async def _jwks_problem(http: httpx.AsyncClient, url: str) -> str:
    """Why the JWKS at `url` is of no use, or "" when it lists keys."""
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        return f"did not answer ({type(exc).__name__})"
    if response.status_code != 200:
        return f"answered {response.status_code}"
    try:
        keys = response.json().get("keys")
    except (ValueError, AttributeError):
        keys = None
    if not isinstance(keys, list) or not keys:
        return "lists no keys"
    return ""
