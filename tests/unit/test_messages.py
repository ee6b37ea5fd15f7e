"""msgspec's validation errors in plain words, naming the field: every kind the API and CLI meet."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from core.config import Secret, Settings, settings_problem
from core.messages import every_problem, problem
from core.models import VideoRequest, WorkMessage


def _problem_of(data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(msgspec.ValidationError) as caught:
        VideoRequest.validate(data)
    return problem(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"prompt": "x" * 4001}, ("prompt", "is longer than 4,000 characters")),
        ({"prompt": "   "}, ("prompt", "must not be blank")),
        ({"prompt": "x", "images": ["https://a/b.png"] * 5}, ("images", "at most 4 images")),
        ({"prompt": "x", "duration": "ten"}, ("duration", "must be a whole number")),
        ({"prompt": "x", "hd": "maybe"}, ("hd", "must be true or false")),
        ({"prompt": 7}, ("prompt", "must be text")),
        ({"prompt": "x", "images": "https://a/b.png"}, ("images", "must be a list")),
        ({"prompt": "x", "images": [3]}, ("images", "must be text")),
        ({}, ("prompt", "is required")),
        ({"prompt": "x", "colour": "red"}, ("colour", "is not a known field")),
        ({"prompt": "x\x00"}, ("prompt", "must not contain a NUL character (\\u0000)")),
        ({"prompt": "x", "duration": 25}, ("duration", "25 s videos need model sora-2-pro")),
        ({"prompt": "x", "provider": "acme"}, ("provider", "must be 't8star'")),
        ({"prompt": "x", "model": ""}, ("model", "must be 'sora-2' or 'sora-2-pro'")),
        (
            {"prompt": "x", "images": ["ftp://a/b.png"]},
            ("images", "image 1 is not an http(s) URL or a data URL"),
        ),
    ],
)
def test_each_kind_of_request_error_names_its_field_in_plain_words(
    data: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert _problem_of(data) == expected


def test_a_request_that_is_not_an_object_blames_the_request() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(["a fox"], VideoRequest)
    assert problem(caught.value) == ("request", "must be an object")


def test_bounds_and_unknown_values_read_plainly() -> None:
    for data, expected in [
        (
            {"task_id": "t", "attempt": 0, "step": "poll", "seq": 1},
            ("attempt", "must be at least 1"),
        ),
        ({"task_id": "", "attempt": 1, "step": "poll", "seq": 1}, ("task_id", "must not be blank")),
        (
            {"task_id": "t", "attempt": 1, "step": "wait", "seq": 1},
            ("step", "unknown value 'wait'"),
        ),
    ]:
        with pytest.raises(msgspec.ValidationError) as caught:
            WorkMessage.from_dict(data)
        assert problem(caught.value) == expected


def test_every_problem_lists_each_bad_field_once_in_field_order() -> None:
    data = {"prompt": " ", "duration": 25, "images": ["ftp://x"], "colour": "red"}
    assert every_problem(VideoRequest, data) == [
        ("colour", "is not a known field"),
        ("prompt", "must not be blank"),
        ("duration", "25 s videos need model sora-2-pro"),
        ("images", "image 1 is not an http(s) URL or a data URL"),
    ]
    assert every_problem(VideoRequest, {"prompt": "a fox"}) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"concurrency": "0"}, "invalid setting VIDEOQ_CONCURRENCY: must be at least 1"),
        ({"sim_speedup": "0"}, "invalid setting VIDEOQ_SIM_SPEED: must be more than 0"),
        ({"step_timeout": "601"}, "invalid setting VIDEOQ_STEP_TIMEOUT: must be at most 600"),
        ({"sim_speedup": "fast"}, "invalid setting VIDEOQ_SIM_SPEED: must be a number"),
        (
            {"upstream_hooks": "maybe"},
            "invalid setting VIDEOQ_UPSTREAM_HOOKS: must be true or false",
        ),
        (
            {"public_url": "ftp://x"},
            "invalid setting VIDEOQ_PUBLIC_URL: must start with http:// or https://",
        ),
        (
            {"log_level": "loud"},
            "invalid setting VIDEOQ_LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR",
        ),
        (
            {"event_loop": "tokio"},
            "invalid setting VIDEOQ_EVENT_LOOP: must be uvloop or asyncio",
        ),
    ],
)
def test_a_bad_setting_is_named_by_its_variable(values: dict[str, str], expected: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        Settings(_env_file=None, **values)
    assert settings_problem(caught.value) == expected


def test_settings_take_text_the_way_the_environment_gives_it() -> None:
    settings = Settings(_env_file=None, concurrency="3", upstream_hooks="off", store=" SQLite ")
    assert (settings.concurrency, settings.upstream_hooks, settings.store) == (3, False, "sqlite")


def test_a_secret_never_shows_its_value() -> None:
    settings = Settings(_env_file=None, qstash_token="qstash-token-value", secret_key="k" * 32)
    assert settings.qstash_token == Secret("qstash-token-value")
    assert settings.qstash_token is not None
    assert settings.qstash_token.get_secret_value() == "qstash-token-value"
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.qstash_token),
        f"{settings.qstash_token}",
    ):
        assert "qstash-token-value" not in shown and "k" * 32 not in shown


def test_a_copy_keeps_what_was_set_and_checks_the_change() -> None:
    secret = "s" * 32
    settings = Settings(_env_file=None, public_url="https://videoq.example.org", secret_key=secret)
    assert settings.hooks_enabled  # the public URL was set
    assert not Settings(_env_file=None, secret_key=secret).hooks_enabled  # left at its default
    copied = settings.replace(step_timeout=8)
    assert copied.step_timeout == 8.0 and copied.public_url == settings.public_url
    assert copied.hooks_enabled and settings.step_timeout == 30.0
    with pytest.raises(msgspec.ValidationError):
        settings.replace(step_timeout=0)
    with pytest.raises(TypeError, match="step_timout"):
        settings.replace(step_timout=8)
