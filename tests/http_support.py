"""Helpers for the HTTP service tests: user tokens, the service in-process, `videoq serve` as a
subprocess, and a QStash fake that keeps every published body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from prometheus_client.parser import text_string_to_metric_families

from core.config import Settings
from core.crypto import KeyBox
from core.http import Service
from core.http.auth import UserAuth
from core.http.envelope import BodyLimits
from core.runtime import Runtime
from core.store import TaskStore
from core.store.sqlite import SqliteStore
from core.upstream import Upstream
from core.worker import SigningKeys
from tests.cli import VIDEOQ
from tests.engine import KEY, NEXT_KEY, HandQueue
from tests.fakes.qstash import FakeQStash
from tests.fakes.qstash.engine import Message
from tests.waiting import wait_until

# A client of a server run by uvicorn forgets an idle connection sooner than uvicorn closes it
# (its keep-alive timeout is 5 s, httpx's expiry 5 s too): a request sent on a connection the
# server is closing at that moment fails with ReadError, and a POST is not retried.
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=1.0)

JWT_SECRET = "test-supabase-jwt-secret-0123456789abcdef"
SECRET_KEY = "test-videoq-server-secret-0123456789abcdef"
USER_A = "6f1c2d3e-0000-4000-8000-00000000000a"
USER_B = "6f1c2d3e-0000-4000-8000-00000000000b"


def user_token(
    sub: str = USER_A,
    *,
    secret: str = JWT_SECRET,
    expires_in: float = 3600,
    audience: str = "authenticated",
    **claims: Any,
) -> str:
    """A Supabase-style access token (HS256), as supabase-js sends it."""
    now = int(time.time())
    body = {
        "sub": sub,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": int(now + expires_in),
        **claims,
    }
    return jwt.encode(body, secret, algorithm="HS256")


def bearer(sub: str = USER_A, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(sub, **kwargs)}"}


@contextlib.asynccontextmanager
async def in_process(
    runtime: Runtime,
    sock: socket.socket | None = None,
    *,
    background: bool = False,
    limits: BodyLimits | None = None,
    auth: UserAuth | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Serve `runtime` on loopback from this event loop; yield a client for it."""
    sock = sock or loopback_socket()
    port = sock.getsockname()[1]
    service = Service(
        runtime, sock=sock, background=background, handle_signals=False, limits=limits, auth=auth
    )
    running = asyncio.create_task(service.run())
    await wait_until(lambda: service.started or running.done(), "the service to start")
    if not service.started:
        raise RuntimeError("the service did not start") from running.exception()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        service.request_exit()
        await asyncio.wait_for(running, 15)


def hand_runtime(
    db_path: Path,
    sock: socket.socket,
    upstream: Upstream,
    store: TaskStore | None = None,
    **settings: Any,
) -> tuple[Runtime, HandQueue]:
    """A runtime on SQLite (or `store`) whose queue only records (the test delivers), served
    at `sock`."""
    defaults: dict[str, Any] = {
        "db_path": db_path,
        "public_url": f"http://127.0.0.1:{sock.getsockname()[1]}",
        "t8star_api_key": "sk-unused-by-this-runtime",
        "supabase_jwt_secret": JWT_SECRET,
        "secret_key": SECRET_KEY,
    }
    config = Settings(_env_file=None, **(defaults | settings))  # type: ignore[call-arg]
    queue = HandQueue()
    key_box = KeyBox(SECRET_KEY) if config.secret_key else None
    keys = SigningKeys(KEY, NEXT_KEY, config.worker_url)
    runtime = Runtime(config, store or SqliteStore(db_path), queue, upstream, keys, key_box)
    return runtime, queue


def loopback_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, for a server started in the test."""
    # With proto=IPPROTO_TCP asyncio sets TCP_NODELAY on the sockets it accepts; without it each
    # answer waits for the client's delayed ACK (+40 ms), which `videoq serve` itself never does.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingQStash(FakeQStash):
    """The QStash fake, also keeping the body of every publish request it took in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bodies: list[bytes] = []  # every publish, deduplicated ones included
        self.accepted: dict[str, bytes] = {}  # message id -> body, new messages only

    def _accept(self, message: Message, dedup_key: str | None) -> Any:
        self.bodies.append(message.body)
        response = super()._accept(message, dedup_key)
        if response.status_code != 202:
            self.accepted[message.message_id] = message.body
        return response

    def billed_per_task(self) -> dict[str, int]:
        """Messages QStash would bill per task: new publishes plus every redelivery."""
        task_of = {mid: json.loads(body)["task_id"] for mid, body in self.accepted.items()}
        billed: Counter[str] = Counter(task_of.values())
        for attempt in self.attempts():
            if attempt.retried > 0 and not attempt.duplicate:
                billed[task_of[attempt.message_id]] += 1
        return dict(billed)


@dataclass
class ServeProcess:
    """`videoq serve` in a subprocess on a fixed loopback port, logging to a file."""

    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until /healthz answers 200."""
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [VIDEOQ, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        await self._wait_healthy(timeout)

    async def _wait_healthy(self, timeout: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:

            async def healthy() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"videoq serve exited early:\n{self.read_log()}")
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/healthz")).status_code == 200
                return False

            await wait_until(
                healthy,
                "videoq serve to answer /healthz",
                timeout,
                interval=0.05,
                detail=self.read_log,
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def clean_env(**settings: str) -> dict[str, str]:
    """The test environment without any videoq setting, plus `settings`."""
    prefixes = ("VIDEOQ_", "T8STAR_", "QSTASH_", "SUPABASE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(settings)
    return env


def fakes_env(qstash_url: str, t8star_url: str) -> dict[str, str]:
    """The settings that point videoq at the QStash and T8Star fakes, with their keys."""
    from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, DEV_TOKEN
    from tests.fakes.t8star import DEFAULT_KEY

    return {
        "QSTASH_TOKEN": DEV_TOKEN,
        "QSTASH_URL": qstash_url,
        "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
        "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
        "T8STAR_API_KEY": DEFAULT_KEY,
        "T8STAR_BASE_URL": t8star_url,
    }


def parse_metrics(text: str) -> dict[str, float]:
    """`name{label="value",...}` -> value for every sample, read by prometheus_client's parser
    (which refuses anything that is not the text format)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples
