"""Which adapters the settings choose: explicit VIDEOQ_STORE/QUEUE/UPSTREAM, else the keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import ConfigError
from core.queue.local import LocalQueue
from core.queue.qstash import QStashQueue
from core.runtime import Runtime
from core.store.sqlite import SqliteStore
from core.store.supabase import SupabaseStore
from core.upstream.simulator import Simulator
from core.upstream.t8star import T8StarUpstream

QSTASH = {"qstash_token": "qstash-token", "qstash_current_signing_key": "sig_current"}
SUPABASE = {"supabase_url": "http://127.0.0.1:9", "supabase_service_role_key": "service-key"}


def runtime(tmp_path: Path, **values: Any) -> Runtime:
    return Runtime.from_settings(Settings(_env_file=None, db_path=tmp_path / "v.db", **values))  # type: ignore[call-arg]


def kinds(built: Runtime) -> tuple[type, type, type]:
    # QStash comes guarded (budget, outages): the adapter is the guard's inner queue.
    queue = built.guard.inner if built.guard is not None else built.queue
    return type(built.store), type(queue), type(built.upstream)


def test_with_no_keys_everything_is_embedded(tmp_path: Path) -> None:
    assert kinds(runtime(tmp_path)) == (SqliteStore, LocalQueue, Simulator)


def test_the_keys_present_choose_the_cloud_adapters(tmp_path: Path) -> None:
    built = runtime(tmp_path, t8star_api_key="sk-t8", **QSTASH, **SUPABASE)
    assert kinds(built) == (SupabaseStore, QStashQueue, T8StarUpstream)
    assert built.guard is not None and isinstance(built.guard.inner, QStashQueue)
    flow_control = built.guard.inner.flow_control
    assert flow_control is not None and flow_control["key"] == "t8star"


def test_explicit_settings_win_over_the_keys_present(tmp_path: Path) -> None:
    built = runtime(
        tmp_path,
        store="SQLite ",
        queue="local",
        upstream="simulator",
        t8star_api_key="sk-t8",
        **QSTASH,
        **SUPABASE,
    )
    assert kinds(built) == (SqliteStore, LocalQueue, Simulator)
    assert not built.settings.uses_qstash and built.settings.uses_simulator


def test_an_empty_choice_means_the_keys_decide(tmp_path: Path) -> None:
    assert kinds(runtime(tmp_path, store="", queue=" ", **QSTASH))[:2] == (SqliteStore, QStashQueue)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": "mysql"}, "VIDEOQ_STORE must be one of sqlite, supabase, not 'mysql'"),
        ({"queue": "sqs"}, "VIDEOQ_QUEUE must be one of local, qstash, not 'sqs'"),
        ({"upstream": "runway"}, "VIDEOQ_UPSTREAM must be one of simulator, t8star, not 'runway'"),
        (
            {"store": "supabase"},
            "VIDEOQ_STORE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY",
        ),
        ({"queue": "qstash"}, "VIDEOQ_QUEUE=qstash needs QSTASH_TOKEN"),
        ({"qstash_token": "t"}, "QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY is not"),
    ],
)
def test_a_bad_choice_names_the_variable(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        runtime(tmp_path, **values)
    assert caught.value.message == message
    assert not (tmp_path / "v.db").exists()


def test_qstash_is_guarded_by_the_budget_and_the_outage_fallback(tmp_path: Path) -> None:
    from core.qstash_guard import GuardedQueue

    built = runtime(tmp_path, **QSTASH, qstash_daily_budget=1000, qstash_fallback_after=5.0)
    assert isinstance(built.queue, GuardedQueue) and built.guard is built.queue
    assert built.usage is not None and built.usage.budget == 1000
    assert built.queue.fallback_after == 5.0
    assert runtime(tmp_path).guard is None


async def test_the_supervisor_refuses_an_unguarded_queue_that_delivers_over_http(
    tmp_path: Path,
) -> None:
    import asyncio

    from core.qstash_guard import GuardedQueue
    from core.supervisor import supervise

    built = runtime(tmp_path, **QSTASH)
    assert isinstance(built.queue, GuardedQueue)
    built.queue = built.queue.inner
    with pytest.raises(ConfigError, match="run `videoq serve`"):
        await supervise(built, asyncio.Event())
