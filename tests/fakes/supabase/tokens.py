"""Supabase-style API keys and user tokens: HS256 JWTs signed with the fake project's secret.

Besides the legacy JWT keys a project has opaque keys (`sb_publishable_…`, `sb_secret_…`), which
the gateway maps to the roles anon and service_role (reference §4.4, `ProjectKeys`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

JWT_SECRET = "fake-supabase-jwt-secret-with-at-least-32-bytes"
PUBLISHABLE_PREFIX = "sb_publishable_"
SECRET_PREFIX = "sb_secret_"
OPAQUE_PREFIX = "sb_"
PUBLIC_CONNECTION_SECONDS = 24 * 3600
"""Realtime connections made with a publishable key last at most a day (api-keys.mdx)."""


class TokenError(Exception):
    """A token that does not verify; `message` is what the real servers say."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


def make_token(
    role: str,
    *,
    sub: str | None = None,
    secret: str = JWT_SECRET,
    expires_in: float = 3600.0,
    **claims: Any,
) -> str:
    """A signed JWT like Supabase's anon/service_role keys (or a user's access token with `sub`)."""
    now = int(time.time())
    body: dict[str, Any] = {"iss": "supabase", "role": role, "iat": now}
    body["exp"] = now + int(expires_in)
    if sub is not None:
        body["sub"] = sub
        body["aud"] = "authenticated"
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256")


def verify_token(token: str | None, secret: str = JWT_SECRET) -> dict[str, Any]:
    """The token's claims, or TokenError with the reason the real server would give."""
    if not token:
        raise TokenError("API key is missing")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"verify_aud": False}, leeway=5
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError(expired_message(_unverified_exp(token)), expired=True) from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("Failed to validate JWT signature") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("The token provided is not a valid JWT") from exc
    if "role" not in claims or not isinstance(claims.get("exp"), int):
        raise TokenError("Fields `role` and `exp` are required in JWT")
    return claims


def expired_message(exp: int | None, now: float | None = None) -> str:
    """Realtime's words for an expired token: "Token has expired <n> seconds ago"."""
    if exp is None:
        return "Token has expired"
    moment = int(time.time() if now is None else now)
    return f"Token has expired {max(moment - exp, 0)} seconds ago"


def _unverified_exp(token: str) -> int | None:
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return exp if isinstance(exp, int) else None


@dataclass(frozen=True)
class ProjectKeys:
    """The project's JWT secret and its opaque API keys, and what each key stands for."""

    jwt_secret: str = JWT_SECRET
    publishable: str = field(default_factory=lambda: PUBLISHABLE_PREFIX + secrets.token_hex(16))
    secret: str = field(default_factory=lambda: SECRET_PREFIX + secrets.token_hex(16))

    def claims(self, token: str | None) -> dict[str, Any]:
        """The claims a key or token carries; TokenError with the server's words if none."""
        if token and token.startswith(OPAQUE_PREFIX):
            return self.opaque_claims(token)
        return verify_token(token, self.jwt_secret)

    def opaque_claims(self, key: str) -> dict[str, Any]:
        """The claims of the JWT the gateway mints for an `sb_` key."""
        now = int(time.time())
        if key == self.secret:
            # Only public (publishable) connections are documented as capped.
            exp = now + 10 * 365 * 86400
            return {"iss": "supabase", "role": "service_role", "iat": now, "exp": exp}
        if key == self.publishable:
            exp = now + PUBLIC_CONNECTION_SECONDS
            return {"iss": "supabase", "role": "anon", "iat": now, "exp": exp}
        raise TokenError("Invalid API key")
