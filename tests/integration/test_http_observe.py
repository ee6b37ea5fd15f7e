"""`/healthz` and `/metrics` over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import signing
from core.config import WORKER_PATH, Settings
from core.errors import StoreError
from core.models import VideoRequest, WorkMessage
from core.runtime import Runtime
from core.supervisor import supervise
from core.upstream.simulator import Simulator
from core.upstream.t8star import T8StarUpstream
from tests.engine import KEY
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_TOKEN, FakeQStash
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, JobScript
from tests.http_support import hand_runtime, in_process, loopback_socket, parse_metrics
from tests.waiting import TIMEOUT


@pytest.fixture
def t8() -> Iterator[FakeT8Star]:
    with FakeT8Star() as server:
        yield server


async def test_metrics_count_tasks_deliveries_and_upstream_calls(
    tmp_path: Path, t8: FakeT8Star
) -> None:
    t8.script_default(JobScript(polls=1))
    sock = loopback_socket()
    runtime, queue = hand_runtime(tmp_path / "v.db", sock, T8StarUpstream(t8.base_url, DEFAULT_KEY))
    async with runtime, in_process(runtime, sock) as client:
        for n in range(3):
            await runtime.service.submit(VideoRequest(prompt=f"scene {n}"))
        while queue.published:
            body = queue.take().message.to_bytes()
            signature = signing.sign(body, KEY, runtime.settings.worker_url)
            response = await client.post(
                WORKER_PATH, content=body, headers={"Upstash-Signature": signature}
            )
            assert response.status_code == 200
        await client.post(WORKER_PATH, content=b"{}", headers={"Upstash-Signature": "x"})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(response.text)
    assert samples['videoq_tasks{status="succeeded"}'] == 3
    assert samples['videoq_tasks{status="queued"}'] == 0
    assert samples['videoq_deliveries_total{outcome="ok"}'] == 6
    assert samples['videoq_deliveries_total{outcome="unauthorized"}'] == 1
    assert samples['videoq_upstream_calls_total{result="ok"}'] == 6
    assert samples['videoq_upstream_call_seconds_bucket{le="+Inf"}'] == 6
    assert samples["videoq_upstream_call_seconds_count"] == 6
    # The hand queue delivers each poll at once, long before its time: never late.
    assert samples['videoq_poll_lateness_seconds_bucket{le="0.05"}'] == 3
    assert samples["videoq_poll_lateness_seconds_count"] == 3
    assert samples["videoq_queue_publish_errors_total"] == 0
    assert samples["videoq_reconciler_republished_total"] == 0
    assert samples["videoq_store_up"] == 1


async def test_healthz_on_the_local_queue_and_when_the_store_is_gone(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db")  # type: ignore[call-arg]
    runtime = Runtime.from_settings(settings)
    async with runtime, in_process(runtime) as client:
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200
        assert healthy.json() == {"ok": True, "data": {"store": "ok", "queue": "ok"}, "error": None}
        await runtime.store.close()
        sick = await client.get("/healthz")
        metrics = parse_metrics((await client.get("/metrics")).text)
        await runtime.store.open()  # so that the runtime closes cleanly
    assert sick.status_code == 503
    body = sick.json()
    assert body["error"]["code"] == "unavailable" and body["data"]["queue"] == "ok"
    assert body["data"]["store"].startswith("unreachable")
    assert metrics["videoq_store_up"] == 0
    assert metrics["videoq_local_queue_pending"] == 0
    assert metrics['videoq_local_queue_messages_total{event="published"}'] == 0


@pytest.mark.parametrize(("token", "status"), [(DEV_TOKEN, 200), ("not-the-token" * 4, 503)])
async def test_healthz_asks_qstash_with_the_token(tmp_path: Path, token: str, status: int) -> None:
    with FakeQStash() as fake:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            db_path=tmp_path / "v.db",
            qstash_token=token,
            qstash_url=fake.url,
            qstash_current_signing_key=DEV_CURRENT_SIGNING_KEY,
        )
        runtime = Runtime.from_settings(settings)
        async with runtime, in_process(runtime) as client:
            response = await client.get("/healthz")
            again = await client.get("/healthz")
    assert response.status_code == status == again.status_code
    if status == 503:
        assert response.json()["data"]["queue"].startswith("unreachable")
        assert token not in response.text


def test_work_message_has_no_room_for_a_key() -> None:
    # BYOK relies on it: a queue message cannot carry anything but the four step fields.
    with pytest.raises(ValueError):
        WorkMessage.from_dict(
            {"task_id": "t", "attempt": 1, "step": "submit", "seq": 1, "api_key": "sk-x"}
        )


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is not installed")
async def test_healthz_probes_a_write_and_fails_on_a_read_only_store(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db")  # type: ignore[call-arg]
    runtime = Runtime.from_settings(settings)
    files = [str(tmp_path / name) for name in ("v.db", "v.db-wal")]
    async with runtime, in_process(runtime) as client:
        assert (await client.get("/healthz")).status_code == 200
        made = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is refused here: {made.stderr.strip()}")
        try:
            sick = await client.get("/healthz")
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
    assert sick.status_code == 503
    assert sick.json()["data"]["store"].startswith("unreachable")


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is not installed")
async def test_a_headless_worker_gives_up_on_a_store_that_takes_no_writes(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db")  # type: ignore[call-arg]
    runtime = Runtime.from_settings(settings)
    files = [str(tmp_path / name) for name in ("v.db", "v.db-wal")]
    async with runtime:
        made = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is refused here: {made.stderr.strip()}")
        try:
            worker = supervise(runtime, asyncio.Event(), watch_store=True)
            with pytest.raises(StoreError, match="takes no writes.*(read-only|cannot be written)"):
                await asyncio.wait_for(worker, TIMEOUT)
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)


async def test_metrics_count_the_rows_a_list_could_not_decode(tmp_path: Path) -> None:
    sock = loopback_socket()
    runtime, _ = hand_runtime(tmp_path / "v.db", sock, Simulator())
    async with runtime, in_process(runtime, sock) as client:
        task = await runtime.service.submit(VideoRequest(prompt="a broken task"))
        with contextlib.closing(sqlite3.connect(tmp_path / "v.db")) as db, db:
            db.execute("UPDATE video_tasks SET status = 'lost' WHERE id = ?", (task.id,))
        before = parse_metrics((await client.get("/metrics")).text)
        listed = await runtime.service.list()
        after = parse_metrics((await client.get("/metrics")).text)
    assert before["videoq_store_unreadable_rows_total"] == 0
    assert [row.task_id for row in listed.unreadable] == [task.id] and listed == []
    assert after["videoq_store_unreadable_rows_total"] == 1
