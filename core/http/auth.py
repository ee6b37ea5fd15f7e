"""Who is calling the task API: a Supabase user JWT (HS256 secret or the project's JWKS)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt
from jwt import PyJWKClient

from core.config import Settings
from core.http.envelope import Unauthorized, Unavailable
from core.models import LOCAL_USER

log = logging.getLogger(__name__)

AUDIENCE = "authenticated"
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"})
JWKS_TIMEOUT = 5.0
JWKS_LIFESPAN = 300.0
MAX_SUBJECT_CHARS = 128
_REQUIRED = ["exp", "sub", "aud"]
_NOT_CONFIGURED = (
    "user sign-in is not configured on this server "
    "(set SUPABASE_JWT_SECRET, SUPABASE_URL or SUPABASE_JWKS_URL)"
)


class UserAuth:
    """Verifies `Authorization: Bearer <Supabase user JWT>` and returns the user id (`sub`)."""

    def __init__(
        self,
        *,
        jwt_secret: str | None = None,
        jwks_url: str | None = None,
        leeway: float = 5.0,
    ) -> None:
        self._secret = jwt_secret or None
        self._jwks = (
            PyJWKClient(jwks_url, lifespan=JWKS_LIFESPAN, timeout=JWKS_TIMEOUT)
            if jwks_url
            else None
        )
        self.jwks_url = jwks_url
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> UserAuth:
        secret = settings.supabase_jwt_secret
        return cls(
            jwt_secret=secret.get_secret_value() if secret else None,
            jwks_url=settings.jwks_url,
            leeway=settings.signature_leeway,
        )

    @property
    def configured(self) -> bool:
        return self._secret is not None or self._jwks is not None

    def describe(self) -> str:
        """How tokens are verified, for the start-up log."""
        ways = []
        if self._secret is not None:
            ways.append("HS256 with SUPABASE_JWT_SECRET")
        if self._jwks is not None:
            ways.append(f"asymmetric keys from {self.jwks_url}")
        return " and ".join(ways) or "not configured: the task API refuses every call"

    async def user_id(self, authorization: str | None) -> str:
        """The signed-in user's id, or Unauthorized / Unavailable with a reason."""
        if not self.configured:
            raise Unavailable(_NOT_CONFIGURED)
        claims = await self._verify(_bearer_token(authorization))
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
            raise Unauthorized("the token names no user (its sub claim is missing or invalid)")
        if subject == LOCAL_USER:
            # The embedded CLI and dashboard own their tasks as LOCAL_USER; no sign-in may.
            raise Unauthorized(f"the token's sub claim {LOCAL_USER!r} is reserved on this server")
        return subject

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT") from None
        key = await self._key_for(token, algorithm)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=AUDIENCE,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None

    async def _key_for(self, token: str, algorithm: object) -> Any:
        if algorithm == "HS256":
            if self._secret is None:
                raise Unauthorized("this server does not accept HS256 tokens; sign in again")
            return self._secret
        if algorithm not in ASYMMETRIC:
            raise Unauthorized(f"tokens signed with {str(algorithm)[:16]!r} are not accepted")
        if self._jwks is None:
            raise Unauthorized("this server accepts only HS256 tokens (no JWKS configured)")
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("the JWKS at %s could not be fetched: %s", self.jwks_url, exc)
            raise Unavailable("the sign-in keys cannot be fetched right now; try again") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signing key is not one this project lists") from None
        return signing_key  # a PyJWK: PyJWT then also checks that its algorithm matches


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("sign in first: send Authorization: Bearer <your Supabase access token>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer <your Supabase access token>")
    return token.strip()


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired; refresh the session and try again"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is not a signed-in user's access token (audience is not authenticated)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (check the clock)"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    return "the token was not accepted"
