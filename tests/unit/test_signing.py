"""Delivery signatures in the QStash format, verified by our own function (DESIGN §3)."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from core import signing
from core.errors import SignatureError

CURRENT = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
OTHER = "sig_6jWGaWRxHsw4vMSPJprXadyvrybF"
URL = "https://videoq.example.com/api/v1/internal/video-worker"
BODY = b'{"task_id":"t1","attempt":1,"step":"submit","seq":1}'


def verify(token: str | None, body: bytes = BODY, subject: str | None = URL) -> dict[str, object]:
    return signing.verify(token, body, current_key=CURRENT, next_key=NEXT, subject=subject)


def forge(**overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "Upstash",
        "sub": URL,
        "iat": now,
        "exp": now + 300,
        "nbf": 0,
        "jti": "jwt_x",
        "body": signing.body_hash(BODY),
    }
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, CURRENT, algorithm="HS256"
    )


def test_a_fresh_token_verifies_and_carries_the_documented_claims() -> None:
    claims = verify(signing.sign(BODY, CURRENT, URL))
    assert claims["iss"] == "Upstash" and claims["sub"] == URL and claims["nbf"] == 0
    assert int(claims["exp"]) - int(claims["iat"]) == 300  # type: ignore[call-overload]
    assert str(claims["body"]).endswith("=") and str(claims["jti"]).startswith("jwt_")


def test_the_next_key_is_accepted() -> None:
    assert verify(signing.sign(BODY, NEXT, URL))["sub"] == URL


def test_a_token_issued_two_seconds_in_the_future_is_within_leeway() -> None:
    assert verify(signing.sign(BODY, CURRENT, URL, now=time.time() + 2))


def test_an_unpadded_body_claim_verifies() -> None:
    assert verify(forge(body=signing.body_hash(BODY).rstrip("=")))


# Tokens are made when the test runs, not when it is collected: a long suite must not turn a
# "future" token into a valid one, or a valid one into an expired one.
BAD_TOKENS: dict[str, tuple[Callable[[], str | None], bytes, str]] = {
    "missing": (lambda: None, BODY, "missing"),
    "empty": (lambda: "", BODY, "missing"),
    "malformed": (lambda: "not-a-jwt", BODY, "malformed"),
    "tampered-body": (lambda: signing.sign(BODY, CURRENT, URL), BODY + b" ", "body hash"),
    "wrong-key": (lambda: signing.sign(BODY, OTHER, URL), BODY, "neither signing key"),
    "expired": (lambda: signing.sign(BODY, CURRENT, URL, now=time.time() - 400), BODY, "expired"),
    "wrong-subject": (lambda: signing.sign(BODY, CURRENT, URL + "/other"), BODY, "subject"),
    "future": (
        lambda: signing.sign(BODY, CURRENT, URL, now=time.time() + 60),
        BODY,
        "not valid yet",
    ),
    "wrong-issuer": (lambda: forge(iss="Someone"), BODY, "issuer"),
    "no-body-claim": (lambda: forge(body=None), BODY, "'body' claim"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_tokens_are_refused_with_the_real_reason(case: str) -> None:
    make_token, body, reason = BAD_TOKENS[case]
    with pytest.raises(SignatureError, match=reason):
        verify(make_token(), body)


def test_a_wrong_key_without_a_next_key_says_the_signature_does_not_match() -> None:
    token = signing.sign(BODY, OTHER, URL)
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(token, BODY, current_key=CURRENT, next_key=None, subject=URL)


def test_an_expired_token_signed_with_the_next_key_reports_expiry_not_a_key_mismatch() -> None:
    with pytest.raises(SignatureError, match="expired"):
        verify(signing.sign(BODY, NEXT, URL, now=time.time() - 400))


def test_trailing_slash_of_the_subject_does_not_matter() -> None:
    assert verify(signing.sign(BODY, CURRENT, URL + "/"))
