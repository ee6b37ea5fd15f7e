"""QStash-format delivery signatures: an HS256 JWT over the raw body.

We verify with our own function instead of `qstash.Receiver`: the SDK passes its clock tolerance
where PyJWT ignores it (a worker whose clock is a second behind refuses every delivery) and
reports the next key's error in place of the real one.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

import jwt

from core.errors import SignatureError
from core.signing_keys import DEFAULT_LEEWAY

ISSUER = "Upstash"
TOKEN_LIFETIME = 300
_REQUIRED_CLAIMS = ["iss", "sub", "exp", "iat", "body"]


def body_hash(raw_body: bytes) -> str:
    """base64url(sha256(body)) with its `=` padding, as QStash puts it in the `body` claim."""
    return base64.urlsafe_b64encode(hashlib.sha256(raw_body).digest()).decode()


def sign(raw_body: bytes, key: str, subject: str, now: float | None = None) -> str:
    """A fresh token for one delivery of `raw_body` to `subject`, signed with `key`."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME,
        "nbf": 0,
        "jti": "jwt_" + secrets.token_urlsafe(18),
        "body": body_hash(raw_body),
    }
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "JWT"})


def verify(
    token: str | None,
    raw_body: bytes,
    *,
    current_key: str,
    next_key: str | None,
    subject: str | None,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, object]:
    """Return the claims of a valid token, or raise SignatureError with the real reason.

    The current key is tried first, then the next one; when both fail, the reason reported is
    the current key's unless only the signature itself did not match it.
    """
    if not token:
        raise SignatureError("missing Upstash-Signature header")
    try:
        return _verify_with(token, raw_body, current_key, subject, leeway)
    except jwt.InvalidSignatureError as current_error:
        if not next_key:
            raise SignatureError(_reason(current_error)) from None
        try:
            return _verify_with(token, raw_body, next_key, subject, leeway)
        except jwt.InvalidSignatureError:
            raise SignatureError("signature matches neither signing key") from None
        except jwt.PyJWTError as next_error:
            raise SignatureError(_reason(next_error)) from None
    except jwt.PyJWTError as error:
        raise SignatureError(_reason(error)) from None


class _BodyMismatch(jwt.InvalidTokenError):
    pass


class _SubjectMismatch(jwt.InvalidTokenError):
    pass


def _verify_with(
    token: str, raw_body: bytes, key: str, subject: str | None, leeway: float
) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        token,
        key,
        algorithms=["HS256"],
        issuer=ISSUER,
        leeway=leeway,
        options={"require": _REQUIRED_CLAIMS, "verify_aud": False},
    )
    if subject is not None and str(claims["sub"]).rstrip("/") != subject.rstrip("/"):
        raise _SubjectMismatch(f"token subject {claims['sub']!r} is not {subject!r}")
    if str(claims["body"]).rstrip("=") != body_hash(raw_body).rstrip("="):
        raise _BodyMismatch("body hash does not match the body received")
    return claims


def _reason(error: Exception) -> str:
    if isinstance(error, jwt.InvalidSignatureError):
        return "signature does not match the signing key"
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token not valid yet (issued in the future beyond the clock leeway)"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token issuer is not Upstash"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the {error.claim!r} claim"
    if isinstance(error, jwt.DecodeError):
        return "token is malformed"
    if isinstance(error, _SubjectMismatch | _BodyMismatch):
        return str(error)
    return f"token rejected: {error}"
