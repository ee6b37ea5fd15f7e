"""Which adapter serves each port: one registry per port, chosen by explicit settings
(VIDEOQ_STORE, VIDEOQ_QUEUE, VIDEOQ_UPSTREAM) or, when those are unset, by the keys present."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

from core.config import Settings
from core.errors import ConfigError
from core.queue import Queue
from core.signing_keys import SigningKeys
from core.steps import SeparateWrites, StepWrites
from core.store import TaskStore
from core.upstream import Upstream

T = TypeVar("T")
QueueBuilder = Callable[[Settings, str], tuple[Queue, SigningKeys]]


def _db_folder(settings: Settings) -> None:
    """Create the SQLite file's folder, or say in one line why it cannot be."""
    try:
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" when a part of the path is a file; say what that means.
        why = "a part of it is a file" if isinstance(exc, FileExistsError) else exc.strerror
        raise ConfigError(
            f"VIDEOQ_DB={settings.db_path}: cannot create its folder "
            f"{settings.db_path.parent}: {why or exc}"
        ) from None


def _sqlite_store(settings: Settings) -> TaskStore:
    from core.store.sqlite import SqliteStore

    _db_folder(settings)
    return SqliteStore(settings.db_path)


def _supabase_store(settings: Settings) -> TaskStore:
    from core.store.supabase import SupabaseStore

    if not (settings.supabase_url and settings.supabase_service_role_key):
        raise ConfigError("VIDEOQ_STORE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
    key = settings.supabase_service_role_key.get_secret_value()
    return SupabaseStore(settings.supabase_url, key)


def _simulator(settings: Settings) -> Upstream:
    from core.upstream.simulator import Simulator

    return Simulator(speedup=settings.sim_speedup, failure_rate=settings.sim_failure_rate)


def _t8star(settings: Settings) -> Upstream:
    from core.upstream.t8star import T8StarUpstream

    key = settings.t8star_api_key
    # Without a server key the client still serves tasks that bring their own (BYOK).
    return T8StarUpstream(settings.t8star_base_url, key.get_secret_value() if key else None)


def _local_queue(settings: Settings, flow_control_key: str) -> tuple[Queue, SigningKeys]:
    from core.queue.local import LocalQueue
    from core.retry import RetryPolicy

    del flow_control_key  # one process calls the upstream with bounded concurrency already
    # Local deliveries never leave the process, so they go unsigned (the supervisor hands them
    # to StepWorker.handle_local). The worker endpoint of `videoq serve` still verifies every
    # HTTP delivery, against a fresh key per process that nothing outside it holds.
    key = "sig_" + secrets.token_urlsafe(24)
    _db_folder(settings)
    queue = LocalQueue(
        settings.db_path,
        signing_key=None,
        destination=settings.worker_url,
        retry=RetryPolicy(retries=8, base=1.0, factor=2.0, cap=300.0),
        concurrency=settings.concurrency,
        lease=settings.step_lease,
    )
    return queue, SigningKeys(key, None, settings.worker_url, settings.signature_leeway)


def _qstash_queue(settings: Settings, flow_control_key: str) -> tuple[Queue, SigningKeys]:
    from core.queue.qstash import QStashQueue

    if settings.qstash_token is None:
        raise ConfigError("VIDEOQ_QUEUE=qstash needs QSTASH_TOKEN")
    if settings.qstash_current_signing_key is None:
        raise ConfigError("QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY is not")
    nxt = settings.qstash_next_signing_key
    keys = SigningKeys(
        settings.qstash_current_signing_key.get_secret_value(),
        nxt.get_secret_value() if nxt else None,
        settings.worker_url,
        settings.signature_leeway,
    )
    queue = QStashQueue(
        settings.qstash_token.get_secret_value(),
        settings.worker_url,
        base_url=settings.qstash_url,
        # Flow control keyed on the provider keeps parallel upstream calls under its limits.
        flow_control_key=flow_control_key,
        parallelism=settings.concurrency,
    )
    return queue, keys


STORES: Mapping[str, Callable[[Settings], TaskStore]] = {
    "sqlite": _sqlite_store,
    "supabase": _supabase_store,
}
QUEUES: Mapping[str, QueueBuilder] = {"local": _local_queue, "qstash": _qstash_queue}
UPSTREAMS: Mapping[str, Callable[[Settings], Upstream]] = {
    "simulator": _simulator,
    "t8star": _t8star,
}


def choose(registry: Mapping[str, T], variable: str, name: str) -> T:
    """The entry called `name`, or a ConfigError naming the variable and the choices."""
    if name not in registry:
        choices = ", ".join(sorted(registry))
        raise ConfigError(f"{variable} must be one of {choices}, not {name!r}")
    return registry[name]


def build_store(settings: Settings) -> TaskStore:
    """The task store VIDEOQ_STORE names (default: from the keys present)."""
    return choose(STORES, "VIDEOQ_STORE", settings.store_backend)(settings)


def build_upstream(settings: Settings) -> Upstream:
    """The upstream adapter VIDEOQ_UPSTREAM names (default: from the keys present)."""
    return choose(UPSTREAMS, "VIDEOQ_UPSTREAM", settings.upstream_backend)(settings)


def step_writes(store: TaskStore, queue: Queue) -> StepWrites:
    """How the worker writes a step's row and next message: in one transaction when the store
    and the queue are one SQLite file (`core.sqlite_steps`), else as two writes."""
    # Both adapters' modules are loaded when both are in use: nothing to import otherwise.
    if "core.store.sqlite" in sys.modules and "core.queue.local" in sys.modules:
        from core.sqlite_steps import joined

        if (together := joined(store, queue)) is not None:
            return together
    return SeparateWrites(store, queue)


def build_queue(settings: Settings, flow_control_key: str) -> tuple[Queue, SigningKeys]:
    """The queue VIDEOQ_QUEUE names and the keys its deliveries are verified with."""
    return choose(QUEUES, "VIDEOQ_QUEUE", settings.queue_backend)(settings, flow_control_key)
