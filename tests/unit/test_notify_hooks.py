"""Notify-hook tokens, the per-task hook limit, and when the settings turn hooks on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import HOOK_PATH, Settings
from core.errors import ConfigError
from core.http.hooks import HookLimiter
from core.notify_hooks import NotifyHooks
from core.runtime import Runtime

SECRET = "s" * 40
OLD_SECRET = "o" * 40
TASK = "3f2a1b2c-0000-4000-8000-000000000001"
OTHER = "3f2a1b2c-0000-4000-8000-000000000002"
PUBLIC = "https://videoq.example"


def test_a_token_verifies_for_its_task_and_names_its_attempt() -> None:
    hooks = NotifyHooks("https://videoq.example", SECRET)
    assert hooks.attempt_of(TASK, hooks.token(TASK, 1)) == 1
    assert hooks.attempt_of(TASK, hooks.token(TASK, 7)) == 7


@pytest.mark.parametrize(
    "token",
    [None, "", "1", "1.", ".abc", "x.abc", "-1.abc", "1.abc", "é.abc", "1.é", "9" * 200],
)
def test_malformed_or_wrong_tokens_verify_for_no_attempt(token: str | None) -> None:
    assert NotifyHooks("https://videoq.example", SECRET).attempt_of(TASK, token) is None


def test_a_token_does_not_verify_for_another_task_attempt_or_secret() -> None:
    hooks = NotifyHooks("https://videoq.example", SECRET)
    token = hooks.token(TASK, 1)
    assert hooks.attempt_of(OTHER, token) is None
    mac = token.partition(".")[2]
    assert hooks.attempt_of(TASK, f"2.{mac}") is None
    assert NotifyHooks("https://videoq.example", "t" * 40).attempt_of(TASK, token) is None


def test_tokens_made_before_a_secret_rotation_still_verify() -> None:
    before = NotifyHooks("https://videoq.example", OLD_SECRET)
    after = NotifyHooks("https://videoq.example", SECRET, previous=[OLD_SECRET])
    assert after.attempt_of(TASK, before.token(TASK, 3)) == 3
    assert after.token(TASK, 3) != before.token(TASK, 3)


def test_the_url_is_the_hook_path_of_the_public_url() -> None:
    hooks = NotifyHooks("https://videoq.example", SECRET)
    url = hooks.url(TASK, 2)
    assert url == f"https://videoq.example{HOOK_PATH}/{TASK}?token={hooks.token(TASK, 2)}"


def test_a_short_secret_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="VIDEOQ_SECRET_KEY must be at least 32"):
        NotifyHooks("https://videoq.example", "short")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_admits_a_burst_per_window_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = HookLimiter(burst=3, window=10.0, clock=clock)
    for _ in range(3):
        assert limiter.take(TASK) is None
        limiter.release(TASK)
        clock.now += 1
    assert limiter.take(TASK) == pytest.approx(7.0)
    assert limiter.take(OTHER) is None  # per task
    clock.now += 7
    assert limiter.take(TASK) is None


def test_the_limiter_admits_one_hook_poll_of_a_task_at_a_time() -> None:
    limiter = HookLimiter(burst=3, window=10.0, clock=Clock())
    assert limiter.take(TASK) is None
    assert limiter.take(TASK) is not None
    limiter.release(TASK)
    assert limiter.take(TASK) is None


def test_the_limiter_forgets_tasks_whose_window_has_passed() -> None:
    clock = Clock()
    limiter = HookLimiter(burst=1, window=1.0, clock=clock)
    for n in range(5000):
        assert limiter.take(f"task-{n}") is None
        limiter.release(f"task-{n}")
    clock.now += 2
    limiter.take("one more")
    assert len(limiter._calls) == 1


def settings(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {"db_path": tmp_path / "v.db", "t8star_api_key": "sk-x"}
    return Settings(_env_file=None, **(base | values))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "on"),
    [
        ({"public_url": PUBLIC, "secret_key": SECRET}, True),
        ({"public_url": PUBLIC, "secret_key": SECRET, "upstream_hooks": False}, False),
        ({"secret_key": SECRET}, False),
        ({"public_url": PUBLIC}, False),
        ({"public_url": "http://127.0.0.1:8000", "secret_key": SECRET}, False),
        (
            {
                "public_url": "http://127.0.0.1:8000",
                "secret_key": SECRET,
                "t8star_base_url": "http://127.0.0.1:9000",
            },
            True,
        ),
    ],
    ids=[
        "all set",
        "setting off",
        "no public URL",
        "no secret",
        "private URL, public T8Star",
        "private URL, local T8Star",
    ],
)
def test_hooks_need_the_setting_a_public_url_and_a_secret(
    tmp_path: Path, values: dict[str, Any], on: bool
) -> None:
    built = Runtime.from_settings(settings(tmp_path, **values))
    assert built.settings.hooks_enabled is on
    assert (built.hooks is not None) is on
    assert built.worker.timing.schedule.hooked is on


def test_the_simulator_gets_no_hooks(tmp_path: Path) -> None:
    values = {"public_url": "https://videoq.example", "secret_key": SECRET}
    built = Runtime.from_settings(settings(tmp_path, upstream="simulator", **values))
    assert built.settings.hooks_enabled and built.hooks is None
