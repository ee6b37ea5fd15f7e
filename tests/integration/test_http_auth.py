"""Supabase user JWTs: HS256 with the project secret, asymmetric keys from the project's JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from core.config import JWKS_PATH, Settings
from core.http.auth import UserAuth
from core.http.envelope import Unauthorized, Unavailable
from core.upstream.t8star import T8StarUpstream
from tests.http_support import (
    JWT_SECRET,
    USER_A,
    hand_runtime,
    in_process,
    loopback_socket,
    user_token,
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


class Jwks:
    """The project's `/.well-known/jwks.json` on loopback, which can be made to fail."""

    def __init__(self) -> None:
        self.keys = [
            {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "rsa-1",
             "alg": "RS256", "use": "sig"},
            {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec-1",
             "alg": "ES256", "use": "sig"},
        ]  # fmt: skip
        self.failing = False
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                jwks.fetches += 1
                if jwks.failing or self.path != JWKS_PATH:
                    self.send_response(500 if jwks.failing else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Jwks:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    with Jwks() as server:
        yield server


def signed(key: Any, algorithm: str, kid: str | None, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": USER_A, "aud": "authenticated", "role": "authenticated", "iat": now,
              "exp": now + 3600, **overrides}  # fmt: skip
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def auth_for(jwks: Jwks, secret: str | None = None) -> UserAuth:
    settings = Settings(_env_file=None, supabase_url=jwks.base_url, supabase_jwt_secret=secret)  # type: ignore[call-arg]
    return UserAuth.from_settings(settings)


async def test_the_jwks_url_is_derived_from_the_project_url(jwks: Jwks) -> None:
    auth = auth_for(jwks)
    assert auth.jwks_url == jwks.base_url + JWKS_PATH
    explicit = Settings(_env_file=None, supabase_jwks_url="https://x.test/keys")  # type: ignore[call-arg]
    assert explicit.jwks_url == "https://x.test/keys"


@pytest.mark.parametrize(("key", "algorithm", "kid"), [(RSA_KEY, "RS256", "rsa-1"),
                                                       (EC_KEY, "ES256", "ec-1")])  # fmt: skip
async def test_asymmetric_tokens_verify_against_the_project_keys(
    jwks: Jwks, key: Any, algorithm: str, kid: str
) -> None:
    auth = auth_for(jwks)
    assert await auth.user_id(f"Bearer {signed(key, algorithm, kid)}") == USER_A
    assert await auth.user_id(f"bearer {signed(key, algorithm, kid)}") == USER_A
    assert jwks.fetches == 1  # the key set is cached


@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (lambda: signed(OTHER_EC_KEY, "ES256", "ec-1"), "signature"),
        (lambda: signed(OTHER_EC_KEY, "ES256", "ec-unknown"), "key"),
        (lambda: signed(EC_KEY, "ES256", "ec-1", exp=int(time.time()) - 60), "expired"),
        (lambda: signed(EC_KEY, "ES256", "ec-1", aud="anon"), "audience"),
        (lambda: signed(RSA_KEY, "RS256", "ec-1"), "not accepted"),
        (lambda: user_token(), "HS256"),
    ],
)
async def test_bad_asymmetric_tokens_are_unauthorized(
    jwks: Jwks, token_of: Any, reason: str
) -> None:
    with pytest.raises(Unauthorized) as refused:
        await auth_for(jwks).user_id(f"Bearer {token_of()}")
    assert reason in refused.value.message


async def test_a_public_key_used_as_an_hmac_secret_is_refused(jwks: Jwks) -> None:
    # The classic algorithm confusion: HS256 "signed" with the published public key.
    pem = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": USER_A, "aud": "authenticated", "exp": 9999999999}
    signing_input = b".".join(
        _b64(json.dumps(part).encode()) for part in ({"alg": "HS256"}, claims)
    )
    signature = hmac.new(pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + _b64(signature)).decode()
    with pytest.raises(Unauthorized):
        await auth_for(jwks, secret=JWT_SECRET).user_id(f"Bearer {forged}")


async def test_both_ways_at_once(jwks: Jwks) -> None:
    auth = auth_for(jwks, secret=JWT_SECRET)
    assert await auth.user_id(f"Bearer {user_token()}") == USER_A
    assert await auth.user_id(f"Bearer {signed(EC_KEY, 'ES256', 'ec-1')}") == USER_A


async def test_an_unreachable_key_set_is_unavailable_not_unauthorized(jwks: Jwks) -> None:
    jwks.failing = True
    with pytest.raises(Unavailable):
        await auth_for(jwks).user_id(f"Bearer {signed(EC_KEY, 'ES256', 'ec-1')}")


async def test_an_hs256_only_server_refuses_asymmetric_tokens() -> None:
    auth = UserAuth(jwt_secret=JWT_SECRET)
    with pytest.raises(Unauthorized, match="only HS256"):
        await auth.user_id(f"Bearer {signed(EC_KEY, 'ES256', 'ec-1')}")


async def test_generate_over_http_with_an_es256_token(tmp_path: Path, jwks: Jwks) -> None:
    sock = loopback_socket()
    upstream = T8StarUpstream("http://127.0.0.1:9", "sk-unused")
    runtime, _ = hand_runtime(tmp_path / "videoq.db", sock, upstream, supabase_url=jwks.base_url)
    headers = {"Authorization": f"Bearer {signed(EC_KEY, 'ES256', 'ec-1')}"}
    async with runtime, in_process(runtime, sock) as client:
        response = await client.post(
            "/api/v1/video/generate", json={"prompt": "a fox"}, headers=headers
        )
        assert response.status_code == 202, response.text
        task = await runtime.store.get(response.json()["data"]["task_id"])
        assert task is not None and task.user_id == USER_A
        jwks.failing = True
        jwks.keys = []
        forged = {"Authorization": f"Bearer {signed(OTHER_EC_KEY, 'ES256', 'ec-9')}"}
        response = await client.get("/api/v1/video/tasks", headers=forged)
        assert response.status_code in (401, 503)
        assert response.json()["error"]["code"] in ("unauthorized", "unavailable")
