"""The HTTP service in the cloud shape: QStash messages per task, deliveries per second.

    uv run python bench/http_service.py [--tasks 200] [--concurrency 32] [--speedup 10]
                                        [--only messages|endpoint|generate|qstash|serve|
                                                serve-deliveries]

Everything runs on loopback: the service in this process (uvicorn), the QStash and T8Star fakes in
threads, SQLite as the store; the HTTP client shares the process (and its cores). Four tables:

1. messages per task: simulated jobs of known length (the fakes' clocks run `--speedup` times
   faster than real time, QStash delays stay whole seconds), counted the way QStash bills them:
   every publish plus every redelivery;
2. deliveries per second straight into the worker endpoint (signed requests, no QStash), per step;
3. POST /generate alone: JWT check, validation, SQLite insert, QStash publish;
4. end to end: how fast POST /generate answers (store insert + QStash publish), then tasks and
   deliveries per second through the QStash fake;
5. `videoq serve` in a process of its own (the client no longer shares its event loop): POST
   /generate and GET /tasks/{id} at 1, 16 and 64 clients;
6. signed worker deliveries into `videoq serve` in its own process (SQLite store, QStash and
   T8Star fakes in this process, QStash holding its deliveries): the bench signs each step
   message like QStash with the fake's key and POSTs it, `--concurrency` at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Coroutine  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from core import signing  # noqa: E402
from core.config import WORKER_PATH, Settings  # noqa: E402
from core.models import TaskStatus, VideoRequest, WorkMessage  # noqa: E402
from core.runtime import Runtime  # noqa: E402
from core.upstream.t8star import T8StarUpstream  # noqa: E402
from tests.engine import KEY  # noqa: E402
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, DEV_TOKEN  # noqa: E402
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, JobScript  # noqa: E402
from tests.http_support import (  # noqa: E402
    JWT_SECRET,
    RecordingQStash,
    ServeProcess,
    bearer,
    clean_env,
    fakes_env,
    free_port,
    hand_runtime,
    in_process,
    loopback_socket,
)

# The bench's one user submits far more than the API's per-user quotas allow.
UNLIMITED = {"VIDEOQ_API_SUBMITS_PER_MINUTE": "1000000", "VIDEOQ_API_ACTIVE_TASKS": "1000000"}
JOBS = [  # (label, request, real job length in seconds of the upstream's clock)
    ("sora-2 10s, 2 min", {"prompt": "p", "duration": 10}, 120.0),
    ("sora-2 15s, 4 min", {"prompt": "p", "duration": 15}, 240.0),
    ("sora-2 10s, 3 min (slow)", {"prompt": "p", "duration": 10}, 180.0),
    ("sora-2-pro 25s, 7 min", {"prompt": "p", "duration": 25, "model": "sora-2-pro"}, 420.0),
]


def cloud_settings(db: Path, sock: Any, qstash_url: str, t8_url: str, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        db_path=db,
        public_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        qstash_token=DEV_TOKEN,
        qstash_url=qstash_url,
        qstash_current_signing_key=DEV_CURRENT_SIGNING_KEY,
        qstash_next_signing_key=DEV_NEXT_SIGNING_KEY,
        t8star_api_key=DEFAULT_KEY,
        t8star_base_url=t8_url,
        reconcile_interval=0.5,
        task_deadline=1e6,
        **extra,
    )


async def wait_terminal(runtime: Runtime, timeout: float) -> None:
    """Wait until no task is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await runtime.store.count_by_status()
        if sum(counts.get(s, 0) for s in (TaskStatus.QUEUED, TaskStatus.RUNNING)) == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"tasks not finished after {timeout}s: {counts}")
        await asyncio.sleep(0.05)


async def submit_jobs(
    runtime: Runtime, t8: FakeT8Star, speedup: float, per_class: int
) -> dict[str, list[str]]:
    """Submit `per_class` tasks of each class of JOBS, scripted to last as long; ids by label."""
    classes: dict[str, list[str]] = {}
    for label, request, seconds in JOBS:
        for n in range(per_class):
            prompt = f"{label} #{n}"
            t8.script_prompt(prompt, JobScript(seconds=seconds / speedup))
            video = VideoRequest.parse({**request, "prompt": prompt})
            task = await runtime.service.submit(video, actor="bench")
            classes.setdefault(label, []).append(task.id)
    return classes


async def messages_per_task(speedup: float, per_class: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    fakes = FakeT8Star(), RecordingQStash(time_scale=1.0), tempfile.TemporaryDirectory()
    with fakes[0] as t8, fakes[1] as qstash, fakes[2] as tmp:
        sock = loopback_socket()
        settings = cloud_settings(Path(tmp) / "v.db", sock, qstash.url, t8.base_url,
                                  speedup=speedup)  # fmt: skip
        runtime = Runtime.from_settings(settings)
        async with runtime, in_process(runtime, sock, background=True):
            classes = await submit_jobs(runtime, t8, speedup, per_class)
            longest = max(seconds for _, _, seconds in JOBS)
            await wait_terminal(runtime, timeout=longest / speedup * 3 + 30)
        billed = qstash.billed_per_task()
        for label, _, seconds in JOBS:
            counts = [billed.get(task_id, 0) for task_id in classes[label]]
            rows.append((label, f"{seconds / 60:.0f} min", str(len(counts)),
                         f"{statistics.mean(counts):.1f}", str(max(counts))))  # fmt: skip
    return rows


async def endpoint_rate(tasks: int, concurrency: int) -> list[tuple[str, ...]]:
    rows = []
    with FakeT8Star() as t8, tempfile.TemporaryDirectory() as tmp:
        t8.script_default(JobScript(polls=1_000_000))  # every poll answers IN_PROGRESS
        sock = loopback_socket()
        upstream = T8StarUpstream(t8.base_url, DEFAULT_KEY)
        runtime, queue = hand_runtime(Path(tmp) / "v.db", sock, upstream)
        async with runtime, in_process(runtime, sock) as client:
            client.timeout = httpx.Timeout(60)
            url = runtime.settings.worker_url
            for _ in range(tasks):
                await runtime.service.submit(VideoRequest(prompt="bench"), actor="bench")
            for label in ("submit (upstream call)", "poll (upstream call)"):
                messages = [queue.take().message for _ in range(len(queue.published))]
                rows.append(await _fire(label, client, url, messages, concurrency))
            stale = [WorkMessage(task_id=f"gone-{n}", attempt=1, step="poll", seq=1)
                     for n in range(tasks)]  # fmt: skip
            rows.append(await _fire("stale (verify + read)", client, url, stale, concurrency))
    return rows


async def _fire(
    label: str,
    client: httpx.AsyncClient,
    url: str,
    messages: list[WorkMessage],
    concurrency: int,
    key: str = KEY,
) -> tuple[str, ...]:
    """POST each message to the worker endpoint, signed with `key` for `url` as QStash signs."""
    bodies = [message.to_bytes() for message in messages]
    signatures = [signing.sign(body, key, url) for body in bodies]

    def one(n: int) -> Awaitable[httpx.Response]:
        headers = {"Upstash-Signature": signatures[n]}
        return client.post(WORKER_PATH, content=bodies[n], headers=headers)

    elapsed, latencies = await _load(len(messages), concurrency, one, 200)
    count = len(messages)
    return (label, str(count), str(concurrency), f"{count / elapsed:.0f}", *_ms(latencies))


async def through_qstash(tasks: int, concurrency: int) -> list[tuple[str, ...]]:
    fakes = FakeT8Star(), RecordingQStash(time_scale=0.001), tempfile.TemporaryDirectory()
    with fakes[0] as t8, fakes[1] as qstash, fakes[2] as tmp:
        t8.script_default(JobScript(polls=3))
        sock = loopback_socket()
        settings = cloud_settings(Path(tmp) / "v.db", sock, qstash.url, t8.base_url,
                                  speedup=1000.0, concurrency=concurrency,
                                  supabase_jwt_secret=JWT_SECRET)  # fmt: skip
        runtime = Runtime.from_settings(settings)
        async with runtime, in_process(runtime, sock, background=True) as client:
            started = time.perf_counter()
            _, latencies = await _generate(client, tasks, concurrency)
            await wait_terminal(runtime, timeout=120)
            elapsed = time.perf_counter() - started
        deliveries = len(qstash.attempts())
    return [(f"{tasks} tasks, 4 steps each", str(concurrency), *_ms(latencies), f"{elapsed:.2f}",
             f"{tasks / elapsed:.0f}", f"{deliveries / elapsed:.0f}")]  # fmt: skip


async def generate_latency(tasks: int) -> list[tuple[str, ...]]:
    """POST /generate alone: QStash holds every delivery, so only the API path is measured."""
    rows = []
    fakes = FakeT8Star(), RecordingQStash(time_scale=1.0), tempfile.TemporaryDirectory()
    with fakes[0] as t8, fakes[1] as qstash, fakes[2] as tmp:
        qstash.delay_deliveries(3600)
        sock = loopback_socket()
        settings = cloud_settings(Path(tmp) / "v.db", sock, qstash.url, t8.base_url,
                                  supabase_jwt_secret=JWT_SECRET)  # fmt: skip
        runtime = Runtime.from_settings(settings)
        async with runtime, in_process(runtime, sock) as client:
            for concurrency in (1, 16):
                rows.append(
                    _load_row(concurrency, tasks, await _generate(client, tasks, concurrency))
                )
    return rows


async def _generate(
    client: httpx.AsyncClient, tasks: int, concurrency: int
) -> tuple[float, list[float]]:
    """POST /generate `tasks` times, `concurrency` at once; as `_load`."""
    headers = bearer()

    def one(n: int) -> Awaitable[httpx.Response]:
        return client.post("/api/v1/video/generate", json={"prompt": f"bench {n}"}, headers=headers)

    return await _load(tasks, concurrency, one, 202)


async def _load(
    count: int,
    concurrency: int,
    request: Callable[[int], Awaitable[httpx.Response]],
    expected: int,
) -> tuple[float, list[float]]:
    """Make `count` requests, `concurrency` at once: seconds in all, and each answer's latency."""
    gate, latencies = asyncio.Semaphore(concurrency), []

    async def one(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            response = await request(n)
            latencies.append(time.perf_counter() - started)
        assert response.status_code == expected, response.text

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - started, latencies


def _ms(latencies: list[float]) -> tuple[str, str]:
    """The median and 95th percentile of `latencies`, in milliseconds, as table cells."""
    ordered = sorted(latencies)
    return (f"{ordered[len(ordered) // 2] * 1000:.1f}",
            f"{ordered[int(len(ordered) * 0.95)] * 1000:.1f}")  # fmt: skip


async def separate_process(tasks: int) -> list[tuple[str, ...]]:
    """`videoq serve` in its own process on the embedded default, the clients in this one."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = clean_env(
            VIDEOQ_DB=str(Path(tmp) / "v.db"),
            VIDEOQ_PUBLIC_URL=f"http://127.0.0.1:{port}",
            SUPABASE_JWT_SECRET=JWT_SECRET,
            **UNLIMITED,
        )
        serve = ServeProcess(env, port, Path(tmp) / "serve.log")
        await serve.start()
        try:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=serve.url, timeout=30, limits=limits) as client:
                headers = bearer()
                for concurrency in (1, 16, 64):
                    posted = await _generate(client, tasks, concurrency)
                    rows.append(("POST /generate", *_load_row(concurrency, tasks, posted)))
                listed = await client.get("/api/v1/video/tasks", headers=headers)
                ids = [task["id"] for task in listed.json()["data"]["tasks"]]

                def get(n: int) -> Awaitable[httpx.Response]:
                    return client.get(f"/api/v1/video/tasks/{ids[n % len(ids)]}", headers=headers)

                for concurrency in (1, 16, 64):
                    got = await _load(tasks, concurrency, get, 200)
                    rows.append(("GET /tasks/{id}", *_load_row(concurrency, tasks, got)))
        finally:
            serve.stop()
    return rows


async def serve_deliveries(tasks: int, concurrency: int) -> list[tuple[str, ...]]:
    """Signed step deliveries into `videoq serve` in its own process, as QStash would send them.

    The deliveries go out on `concurrency` raw keep-alive connections (`RawPoster`): httpx's
    pool costs the client more CPU per request than the server spends on it.
    """
    rows = []
    fakes = FakeT8Star(), RecordingQStash(time_scale=1.0), tempfile.TemporaryDirectory()
    with fakes[0] as t8, fakes[1] as qstash, fakes[2] as tmp:
        t8.script_default(JobScript(polls=1_000_000))  # every poll answers IN_PROGRESS
        qstash.delay_deliveries(3600)  # the bench delivers, QStash only takes the publishes
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        env = clean_env(
            **fakes_env(qstash.url, t8.base_url),
            VIDEOQ_DB=str(Path(tmp) / "v.db"),
            VIDEOQ_PUBLIC_URL=public,
            SUPABASE_JWT_SECRET=JWT_SECRET,
            VIDEOQ_CONCURRENCY=str(concurrency),
            **UNLIMITED,
        )
        serve = ServeProcess(env, port, Path(tmp) / "serve.log")
        await serve.start()
        try:
            async with httpx.AsyncClient(base_url=serve.url, timeout=60) as client:
                await _generate(client, tasks, 16)
            assert serve.process is not None
            poster = RawPoster("127.0.0.1", port, concurrency, serve.process.pid)
            url = public + WORKER_PATH
            for label in ("submit (upstream call)", "poll (upstream call)"):
                await wait_published(qstash, tasks)
                messages = [WorkMessage.from_bytes(body) for body in qstash.accepted.values()]
                qstash.accepted.clear()
                rows.append(await poster.fire(label, url, messages, DEV_CURRENT_SIGNING_KEY))
            stale = [WorkMessage(task_id=f"gone-{n}", attempt=1, step="poll", seq=1)
                     for n in range(tasks)]  # fmt: skip
            rows.append(await poster.fire("stale (verify + read)", url, stale,
                                          DEV_CURRENT_SIGNING_KEY))  # fmt: skip
            await poster.close()
        finally:
            serve.stop()
    return rows


async def wait_published(qstash: RecordingQStash, count: int, timeout: float = 60.0) -> None:
    """Wait until the QStash fake took `count` new messages."""
    deadline = time.monotonic() + timeout
    while len(qstash.accepted) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(qstash.accepted)} of {count} messages were published")
        await asyncio.sleep(0.05)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawPoster:
    """POSTs over `concurrency` keep-alive HTTP/1.1 connections, one request at a time each."""

    def __init__(self, host: str, port: int, concurrency: int, server_pid: int) -> None:
        self.host, self.port, self.concurrency = host, port, concurrency
        self.server_pid = server_pid  # whose CPU time each row reports
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def fire(
        self, label: str, url: str, messages: list[WorkMessage], key: str
    ) -> tuple[str, ...]:
        """Deliver each message signed with `key` for `url`; a row like `_fire`'s."""
        bodies = [message.to_bytes() for message in messages]
        requests = [self._request(body, signing.sign(body, key, url)) for body in bodies]
        gate, latencies = asyncio.Semaphore(self.concurrency), []

        async def one(request: bytes) -> None:
            async with gate:
                started = time.perf_counter()
                status = await self._send(request)
                latencies.append(time.perf_counter() - started)
            assert status == 200, status

        started, cpu_started = time.perf_counter(), process_cpu(self.server_pid)
        await asyncio.gather(*(one(request) for request in requests))
        elapsed, count = time.perf_counter() - started, len(messages)
        cpu = process_cpu(self.server_pid) - cpu_started
        return (label, str(count), str(self.concurrency), f"{count / elapsed:.0f}",
                *_ms(latencies), f"{cpu * 1000 / count:.2f}")  # fmt: skip

    def _request(self, body: bytes, signature: str) -> bytes:
        head = (f"POST {WORKER_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nUpstash-Signature: {signature}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        return head.encode() + body

    async def _send(self, request: bytes) -> int:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines
                      if line.lower().startswith("content-length:"))  # fmt: skip
        await reader.readexactly(length)
        self._idle.append((reader, writer))
        return int(lines[0].split()[1])

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def _load_row(concurrency: int, count: int, load: tuple[float, list[float]]) -> tuple[str, ...]:
    """Concurrency, requests, per second, p50 and p95 ms of what `_load` measured."""
    elapsed, latencies = load
    return (str(concurrency), str(count), f"{count / elapsed:.0f}", *_ms(latencies))


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def run(step: Callable[[], Coroutine[Any, Any, list[tuple[str, ...]]]]) -> list[tuple[str, ...]]:
    return asyncio.run(step())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["messages", "endpoint", "generate", "qstash", "serve", "serve-deliveries"],
        help="print this table alone",
    )
    args = parser.parse_args()
    tables: dict[
        str, tuple[str, tuple[str, ...], Callable[[], Coroutine[Any, Any, list[tuple[str, ...]]]]]
    ]
    tables = {
        "messages": (
            f"QStash messages per task (publishes + redeliveries), clocks x{args.speedup:g}",
            ("job", "length", "tasks", "mean", "max"),
            lambda: messages_per_task(args.speedup, args.per_class),
        ),
        "endpoint": (
            "worker endpoint, signed deliveries over loopback HTTP (SQLite store)",
            ("step", "deliveries", "concurrency", "per s", "p50 ms", "p95 ms"),
            lambda: endpoint_rate(args.tasks, args.concurrency),
        ),
        "generate": (
            "POST /generate alone (insert + QStash publish; deliveries held back)",
            ("concurrency", "requests", "per s", "p50 ms", "p95 ms"),
            lambda: generate_latency(args.tasks),
        ),
        "qstash": (
            "end to end: POST /generate, then QStash fake deliveries (flow control = concurrency)",
            (
                "run",
                "concurrency",
                "generate p50 ms",
                "p95 ms",
                "seconds",
                "tasks/s",
                "deliveries/s",
            ),
            lambda: through_qstash(args.tasks, args.concurrency),
        ),
        "serve": (
            "`videoq serve` in its own process (embedded default: SQLite, local queue, simulator)",
            ("request", "concurrency", "requests", "per s", "p50 ms", "p95 ms"),
            lambda: separate_process(args.tasks),
        ),
        "serve-deliveries": (
            "signed worker deliveries into `videoq serve` in its own process (SQLite store,"
            " QStash + T8Star fakes)",
            ("step", "deliveries", "concurrency", "per s", "p50 ms", "p95 ms", "serve CPU ms"),
            lambda: serve_deliveries(args.tasks, args.concurrency),
        ),
    }
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    for name, (title, header, step) in tables.items():
        if args.only in (None, name):
            table(title, header, run(step))


if __name__ == "__main__":
    main()
