"""Supabase-style API keys and user tokens: HS256 JWTs signed with the fake project's secret."""

from __future__ import annotations

import time
from typing import Any

import jwt

JWT_SECRET = "fake-supabase-jwt-secret-with-at-least-32-bytes"


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
        raise TokenError("Token has expired", expired=True) from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("Failed to validate JWT signature") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("The token provided is not a valid JWT") from exc
    if "role" not in claims or not isinstance(claims.get("exp"), int):
        raise TokenError("Fields `role` and `exp` are required in JWT")
    return claims
