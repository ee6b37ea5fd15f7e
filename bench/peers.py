"""Workload W on videoq and on the queues a user would pick instead, side by side in one run.

    uv run --group peers python bench/peers.py [--rounds 3] [--tasks 2000] [--systems ...]

W: every task is 1 submit + 3 polls; each poll is a delayed message with the smallest delay the
system allows, the upstream answers at once, and the task's state row is written durably on
every step. Each system runs W in a fresh child process (a worker of concurrency 32 where the
system has one), in interleaved rounds; the table gives min / median / max steps per second,
CPU milliseconds per step (the child and every server process it used), memory (the child's
peak RSS plus its servers' PSS at the end of the round), and the videoq ÷ peer ratio of steps
per second in each round.

The peers (huey, arq, procrastinate, psutil) are the `peers` dependency group. Redis is the
`redis-server` OS package (`apt-get install redis-server`); PostgreSQL is started as the tests
start it (tests/local_postgres.py). Both are started and stopped by the bench, on loopback or a
private socket in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLLS = 3
CONCURRENCY = 32
PEER_DELAY = 0.001
"""Seconds of a peer's poll delay: the millisecond is the finest unit arq's defer takes, and
huey and procrastinate take it too (videoq's own smallest is shorter, see `run_videoq`)."""
REDIS_HINT = "install it with `apt-get install redis-server` (Debian/Ubuntu)"
STATE_SQL = (
    "CREATE TABLE IF NOT EXISTS task_state (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " polls INTEGER NOT NULL, updated_at REAL NOT NULL)"
)
SYSTEMS = {
    "videoq": "videoq, one process: SQLite store + local queue + simulator, concurrency 32,"
    " on the loop `videoq --no-ui` picks (uvloop where installed)",
    "huey-normal": "huey SqliteHuey, 1 thread, WAL, synchronous=NORMAL (state row in its file)",
    "huey-full": "huey SqliteHuey, 1 thread, WAL, its default synchronous=FULL",
    "arq": "arq + Redis (appendonly yes, appendfsync everysec), max_jobs 32, state in a hash",
    "procrastinate": "procrastinate + PostgreSQL (fsync, synchronous_commit on), concurrency 32",
}


@dataclass
class Round:
    """What one system did in one round."""

    system: str
    steps: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def cpu_ms_per_step(self) -> float:
        return self.cpu_seconds * 1000 / self.steps


@dataclass
class Window:
    """The timed part of a child's run: from the first submit to the last step's write."""

    started: float = 0.0
    cpu_started: float = 0.0
    result: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        print("go", flush=True)  # the parent samples the servers' CPU now
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def finish(self, steps: int) -> None:
        self.result = {
            "steps": steps,
            "seconds": time.perf_counter() - self.started,
            "cpu_seconds": time.process_time() - self.cpu_started,
        }
        print("stop", flush=True)


# -- videoq --------------------------------------------------------------------------------------


def answer_on_the_third_poll() -> dict[str, int]:
    """Make the simulator answer SUCCEEDED at a job's third poll (RUNNING before), at once.

    Patched on the class, in this child process only, so it holds however the runtime builds
    its upstream. Returns the poll count per upstream job.
    """
    from core.upstream import UpstreamState, UpstreamStatus
    from core.upstream.simulator import Simulator

    polls: dict[str, int] = {}

    async def status(self: Any, upstream_task_id: str, api_key: str | None = None) -> Any:
        polls[upstream_task_id] = count = polls.get(upstream_task_id, 0) + 1
        if count < POLLS:
            return UpstreamStatus(UpstreamState.RUNNING, "IN_PROGRESS", 33 * count)
        url = f"https://simulator.videoq.invalid/{upstream_task_id}.mp4"
        return UpstreamStatus(UpstreamState.SUCCEEDED, "SUCCESS", 100, video_url=url)

    Simulator.status = status  # type: ignore[method-assign]
    return polls


async def run_videoq(tasks: int, workdir: Path, window: Window) -> None:
    """W on the embedded pipeline, through the public runtime, service and supervisor only."""
    from core.config import Settings
    from core.demo import demo_requests
    from core.models import TaskStatus
    from core.runtime import Runtime
    from core.supervisor import supervise

    settings = Settings(
        db_path=workdir / "videoq.db",
        sim_speedup=100_000,  # the largest speed: poll delays of 30 µs to 2 ms, the smallest
        sim_failure_rate=0.0,
        concurrency=CONCURRENCY,
        reconcile_interval=5.0,
        task_deadline=1e7,  # the simulated clock runs fast; our own queueing time does not
    )
    polls = answer_on_the_third_poll()
    async with Runtime.from_settings(settings) as runtime:
        stop = asyncio.Event()
        finished = asyncio.create_task(_all_finished(runtime.store, tasks, stop))
        await asyncio.sleep(0)  # the feed subscribes before the first submit
        # Built before the window, as huey's consumer and arq's worker are: their imports are
        # start-up, not steps.
        runtime.worker, runtime.reconciler  # noqa: B018
        window.start()
        for request in demo_requests(tasks):
            await runtime.service.submit(request, actor="bench")
        await supervise(runtime, stop)
        await finished
        window.finish(tasks + sum(polls.values()))
        counts = await runtime.store.count_by_status()
    assert counts[TaskStatus.SUCCEEDED] == tasks, counts


async def _all_finished(store: Any, tasks: int, stop: asyncio.Event) -> None:
    """Set `stop` once `tasks` tasks have ended, as the store's change feed tells."""
    from contextlib import aclosing

    ended: set[str] = set()
    async with aclosing(store.changes()) as feed:
        async for change in feed:
            if change.task is not None and change.task.status.terminal:
                ended.add(change.task.id)
                if len(ended) >= tasks:
                    stop.set()
                    return


# -- huey ----------------------------------------------------------------------------------------


def run_huey(tasks: int, workdir: Path, window: Window, *, normal: bool) -> None:
    """W on SqliteHuey with one worker thread; the state table lives in huey's own file."""
    import sqlite3

    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalStorage(SqliteStorage):  # huey's fsync=False means synchronous=OFF
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute("pragma synchronous=NORMAL")
            return conn

    path = str(workdir / "huey.db")
    huey = SqliteHuey(filename=path, results=False, storage_class=NormalStorage if normal else None)
    local, done, count = threading.local(), threading.Event(), [0]

    def state() -> sqlite3.Connection:
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(path, isolation_level=None)
            local.db.execute("pragma journal_mode=wal")
            local.db.execute(f"pragma synchronous={'NORMAL' if normal else 'FULL'}")
        return local.db

    @huey.task()
    def step(task_id: str, polls: int) -> None:
        status = "succeeded" if polls == POLLS else "running"
        state().execute(
            "UPDATE task_state SET status = ?, polls = ?, updated_at = ? WHERE id = ?",
            (status, polls, time.time(), task_id),
        )
        count[0] += 1
        if polls < POLLS:
            step.schedule(args=(task_id, polls + 1), delay=PEER_DELAY)
        elif count[0] == tasks * (POLLS + 1):
            done.set()

    state().execute(STATE_SQL)
    consumer = huey.create_consumer(
        workers=1, worker_type="thread", periodic=False, initial_delay=0.001, max_delay=0.01
    )
    window.start()
    for n in range(tasks):
        task_id = f"task-{n}"
        state().execute("INSERT INTO task_state VALUES (?, 'queued', 0, ?)", (task_id, time.time()))
        step(task_id, 0)
    consumer.start()  # its scheduler and worker threads; this thread only waits
    done.wait()
    window.finish(count[0])
    consumer.stop(graceful=True)


# -- arq + Redis ---------------------------------------------------------------------------------


async def run_arq(tasks: int, port: int, window: Window) -> None:
    """W on arq with one worker of max_jobs 32 in this process; state in one Redis hash each."""
    from arq import Worker, create_pool
    from arq.connections import RedisSettings
    from arq.worker import func

    redis_settings = RedisSettings(host="127.0.0.1", port=port)
    pool = await create_pool(redis_settings)
    await pool.flushall()
    done, count = asyncio.Event(), [0]

    async def step(ctx: dict[str, Any], task_id: str, polls: int) -> None:
        status = "succeeded" if polls == POLLS else "running"
        mapping = {"status": status, "polls": polls, "updated_at": time.time()}
        await ctx["redis"].hset(f"task:{task_id}", mapping=mapping)
        count[0] += 1
        if polls < POLLS:
            await ctx["redis"].enqueue_job("step", task_id, polls + 1, _defer_by=PEER_DELAY)
        elif count[0] == tasks * (POLLS + 1):
            done.set()

    worker = Worker(
        functions=[func(step, name="step")],
        redis_pool=pool,
        max_jobs=CONCURRENCY,
        poll_delay=PEER_DELAY,
        keep_result=0,
        handle_signals=False,
    )
    window.start()
    for n in range(tasks):
        task_id = f"task-{n}"
        await pool.hset(f"task:{task_id}", mapping={"status": "queued", "polls": 0})
        await pool.enqueue_job("step", task_id, 0)
    running = asyncio.create_task(worker.async_run())
    await done.wait()
    window.finish(count[0])
    running.cancel()
    # A job that is still winding down (the one that set `done`) may end cancelled: the round
    # is measured already, so the shutdown's outcome is not the run's.
    await asyncio.gather(running, worker.close(), return_exceptions=True)
    await pool.aclose()


# -- procrastinate + PostgreSQL ------------------------------------------------------------------


async def run_procrastinate(tasks: int, conninfo: str, window: Window) -> None:
    """W on procrastinate with one worker of concurrency 32 in this process; state in a table."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    done, count = asyncio.Event(), [0]

    @app.task(name="step")
    async def step(task_id: str, polls: int) -> None:
        status = "succeeded" if polls == POLLS else "running"
        await app.connector.execute_query_async(
            "UPDATE task_state SET status = %(status)s, polls = %(polls)s,"
            " updated_at = %(at)s WHERE id = %(id)s",
            status=status,
            polls=polls,
            at=time.time(),
            id=task_id,
        )
        count[0] += 1
        if polls < POLLS:
            later = step.configure(schedule_in={"seconds": PEER_DELAY})
            await later.defer_async(task_id=task_id, polls=polls + 1)
        elif count[0] == tasks * (POLLS + 1):
            done.set()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(STATE_SQL.replace("REAL", "double precision"))
        window.start()
        for n in range(tasks):
            task_id = f"task-{n}"
            await app.connector.execute_query_async(
                "INSERT INTO task_state VALUES (%(id)s, 'queued', 0, %(at)s)",
                id=task_id,
                at=time.time(),
            )
            await step.defer_async(task_id=task_id, polls=0)
        running = asyncio.create_task(
            app.run_worker_async(
                concurrency=CONCURRENCY,
                fetch_job_polling_interval=PEER_DELAY,
                install_signal_handlers=False,
            )
        )
        await done.wait()
        window.finish(count[0])
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# -- the child: one system, one round ------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run W once on `args.child` and print its window as JSON (the parent reads it)."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    workdir, window = Path(args.workdir), Window()
    if args.child == "videoq":
        from core import event_loop
        from core.config import Settings

        # The loop `videoq --no-ui` runs on: VIDEOQ_EVENT_LOOP, else uvloop where installed.
        loop = Settings(_env_file=None).event_loop  # type: ignore[call-arg]
        event_loop.run(run_videoq(args.tasks, workdir, window), loop)
    elif args.child.startswith("huey"):
        run_huey(args.tasks, workdir, window, normal=args.child == "huey-normal")
    elif args.child == "arq":
        asyncio.run(run_arq(args.tasks, args.redis_port, window))
    else:
        asyncio.run(run_procrastinate(args.tasks, args.conninfo, window))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(window.result | {"peak_rss_mb": peak}), flush=True)


# -- the parent: servers, rounds, the table ------------------------------------------------------


def server_cpu(processes: list[Any]) -> float:
    """CPU seconds the server processes and their (live or reaped) children have used so far."""
    import psutil

    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for kid in process.children(recursive=True):
                kid_times = kid.cpu_times()
                total += kid_times.user + kid_times.system
        except psutil.NoSuchProcess:
            continue
    return total


def server_memory_mb(processes: list[Any]) -> float:
    """The servers' proportional set size: shared memory counted once across PostgreSQL's
    processes, where their RSS would count it in each."""
    import psutil

    total = 0
    for process in processes:
        try:
            for each in (process, *process.children(recursive=True)):
                total += each.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


@dataclass
class Servers:
    """The servers the peers need, with the psutil processes whose CPU each system is billed."""

    redis_port: int = 0
    postgres_server: Any = None
    redis: list[Any] = field(default_factory=list)
    postgres: list[Any] = field(default_factory=list)

    def of(self, system: str) -> list[Any]:
        return {"arq": self.redis, "procrastinate": self.postgres}.get(system, [])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(root: Path) -> Iterator[tuple[int, Any]]:
    """redis-server on a loopback port with AOF (appendfsync everysec), in a temp dir."""
    import psutil

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(f"arq needs redis-server, which is not installed: {REDIS_HINT}")
    port = _free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(root), "--save", ""]
    options += ["--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"]
    process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield port, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("redis-server exited at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not accept connections within 30 s")


@contextmanager
def postgres() -> Iterator[tuple[Any, Any]]:
    """A private PostgreSQL as the tests start it, made durable again (fsync and commits on)."""
    import psutil
    import psycopg
    import pytest

    from tests.local_postgres import postgres_server

    try:
        server = postgres_server()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise SystemExit(f"procrastinate needs PostgreSQL: {exc}") from None
    server.start()
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            # The test server trades durability for speed; a peer in production would not.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = on")
            conn.execute("SELECT pg_reload_conf()")
            version = conn.execute("SHOW server_version").fetchone()
        postmaster = [p for p in psutil.Process().children() if "postgres" in p.name()]
        print(f"PostgreSQL {version[0] if version else '?'}: fsync, synchronous_commit on")
        yield server, postmaster[0]
    finally:
        server.stop()


@contextmanager
def fresh_database(server: Any) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server for one round; dropped after it."""
    import psycopg

    name = f"round_{time.monotonic_ns()}"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.conninfo(dbname=name)
    finally:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_round(system: str, tasks: int, servers: Servers, root: Path) -> Round:
    """One child process running W on `system`, on fresh files or a fresh database."""
    if system != "procrastinate":
        return run_child(system, tasks, servers, root, "")
    with fresh_database(servers.postgres_server) as conninfo:
        return run_child(system, tasks, servers, root, conninfo)


def run_child(system: str, tasks: int, servers: Servers, root: Path, conninfo: str) -> Round:
    """Run W once in a child process; the servers' CPU in its timed window is billed to it."""
    workdir = Path(tempfile.mkdtemp(dir=root, prefix=f"{system}-"))
    command = [sys.executable, __file__, "--child", system, "--tasks", str(tasks)]
    command += ["--workdir", str(workdir), "--redis-port", str(servers.redis_port)]
    command += ["--conninfo", conninfo]
    processes = servers.of(system)
    child_process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child_process.stdout is not None
    marks, result = [], None
    for line in child_process.stdout:
        if line.strip() in ("go", "stop"):
            marks.append(server_cpu(processes))
        elif line.startswith("{"):
            result = json.loads(line)
    rss = server_memory_mb(processes)
    if child_process.wait() != 0 or result is None or len(marks) != 2:
        raise SystemExit(f"{system}: the round failed (exit {child_process.returncode})")
    shutil.rmtree(workdir, ignore_errors=True)
    return Round(
        system,
        int(result["steps"]),
        result["seconds"],
        result["cpu_seconds"] + marks[1] - marks[0],
        result["peak_rss_mb"] + rss,
    )


def report(results: list[Round], systems: list[str], rounds: int) -> None:
    """The table per system, then the videoq ÷ peer ratio of steps/s in each round."""
    print(f"\n{'system':<15}{'steps/s min / median / max':>30}{'CPU ms/step':>14}{'RSS MB':>9}")
    print("-" * 68)
    for system in systems:
        mine = [r for r in results if r.system == system]
        rates = sorted(r.steps_per_s for r in mine)
        spread = f"{rates[0]:,.0f} / {statistics.median(rates):,.0f} / {rates[-1]:,.0f}"
        cpu = statistics.median(r.cpu_ms_per_step for r in mine)
        rss = max(r.peak_rss_mb for r in mine)
        print(f"{system:<15}{spread:>30}{cpu:>14.2f}{rss:>9.0f}")
    if "videoq" not in systems or len(systems) < 2:
        return
    peers = [s for s in systems if s != "videoq"]
    print("\nvideoq ÷ peer, steps/s, per round")
    print(f"{'round':<8}" + "".join(f"{peer:>15}" for peer in peers))
    for n in range(rounds):
        rate = {r.system: r.steps_per_s for r in results[n * len(systems) : (n + 1) * len(systems)]}
        print(f"{n + 1:<8}" + "".join(f"{rate['videoq'] / rate[peer]:>15.2f}" for peer in peers))


@contextmanager
def started_servers(systems: list[str], root: Path) -> Iterator[Servers]:
    servers = Servers()
    with ExitStack() as stack:
        if "arq" in systems:
            servers.redis_port, redis = stack.enter_context(redis_server(root))
            servers.redis = [redis]
        if "procrastinate" in systems:
            servers.postgres_server, postmaster = stack.enter_context(postgres())
            servers.postgres = [postmaster]
        yield servers


def versions(systems: list[str]) -> str:
    from importlib.metadata import version

    names = {"huey-normal": "huey", "huey-full": "huey", "arq": "arq"}
    names |= {"procrastinate": "procrastinate"}
    shown = {names[s]: version(names[s]) for s in systems if s in names}
    return ", ".join(f"{name} {number}" for name, number in shown.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per round (default 2000)")
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=list(SYSTEMS),
        default=list(SYSTEMS),
        help="which systems to run (default: all)",
    )
    for hidden in ("--child", "--workdir", "--conninfo"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--redis-port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    if args.rounds < 1 or args.tasks < 1:
        raise SystemExit("--rounds and --tasks must be 1 or more")
    systems: list[str] = args.systems
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    print(f"W: {args.tasks} tasks x (1 submit + {POLLS} polls), {args.rounds} interleaved rounds")
    print(f"peers: {versions(systems) or 'none'}; poll delay {PEER_DELAY * 1000:g} ms")
    for system in systems:
        print(f"  {system:<14} {SYSTEMS[system]}")
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="videoq-peers-") as tmp,
        started_servers(systems, Path(tmp)) as servers,
    ):
        for n in range(args.rounds):
            for system in systems:
                result = run_round(system, args.tasks, servers, Path(tmp))
                results.append(result)
                print(f"round {n + 1} {system:<14} {result.steps_per_s:>8,.0f} steps/s", flush=True)
    report(results, systems, args.rounds)


if __name__ == "__main__":
    main()
