"""`videoq serve` as a process: the embedded default works alone, stops cleanly, fails loudly."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.errors import StoreError
from core.http import Service
from core.runtime import Runtime
from tests.cli import VIDEOQ
from tests.http_support import (
    JWT_SECRET,
    ServeProcess,
    bearer,
    clean_env,
    free_port,
    loopback_socket,
)
from tests.waiting import wait_until


@pytest.mark.slow
async def test_serve_alone_on_the_embedded_default_finishes_api_tasks(tmp_path: Path) -> None:
    env = clean_env(VIDEOQ_DB=str(tmp_path / "v.db"), SUPABASE_JWT_SECRET=JWT_SECRET,
                    VIDEOQ_SIM_SPEED="2000", VIDEOQ_SIM_FAILURE_RATE="0")  # fmt: skip
    serve = ServeProcess(env, free_port(), tmp_path / "serve.log")
    await serve.start()
    try:
        async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
            created = await client.post(
                "/api/v1/video/generate", json={"prompt": "a fox"}, headers=bearer()
            )
            task_id = created.json()["data"]["task_id"]

            async def succeeded() -> bool:
                got = await client.get(f"/api/v1/video/tasks/{task_id}", headers=bearer())
                return bool(got.json()["data"]["task"]["status"] == "succeeded")

            await wait_until(
                succeeded, f"task {task_id} to succeed", 30, interval=0.05, detail=serve.read_log
            )
    finally:
        code = serve.stop()
    log = serve.read_log()
    assert code == 0, log
    assert "simulator stands in" in log and "SIGTERM received" in log
    assert "videoq serve stopped" in log and "Traceback" not in log


def test_serve_on_a_busy_port_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(VIDEOQ_DB=str(tmp_path / "v.db"))
        done = subprocess.run(
            [VIDEOQ, "serve", "--port", str(port)], env=env, capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert "address already in use" in (done.stdout + done.stderr).lower()


def test_serve_refuses_qstash_without_its_signing_key(tmp_path: Path) -> None:
    env = clean_env(VIDEOQ_DB=str(tmp_path / "v.db"), QSTASH_TOKEN="token")
    done = subprocess.run(
        [VIDEOQ, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "QSTASH_CURRENT_SIGNING_KEY" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_service_stops_when_its_background_work_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime.from_settings(Settings(_env_file=None, db_path=tmp_path / "v.db"))  # type: ignore[call-arg]

    async def broken(runtime: Runtime, stop: asyncio.Event, **kwargs: object) -> None:
        raise StoreError("the database went away")

    monkeypatch.setattr("core.http.server.supervise", broken)
    async with runtime:
        service = Service(runtime, sock=loopback_socket(), handle_signals=False)
        assert await asyncio.wait_for(service.run(), 15) == 1
