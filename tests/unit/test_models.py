"""The task's state machine and the request rules (DESIGN §2)."""

from __future__ import annotations

import itertools

import pytest
from msgspec.structs import replace

from core.errors import InvalidRequest, InvalidState
from core.models import (
    CANCELLABLE,
    RETRYABLE,
    Task,
    TaskStatus,
    VideoRequest,
    WorkMessage,
    can_transition,
    cancel_refusal,
    check_transition,
    end_changes,
    retry_refusal,
    utcnow,
)

Q, R, S, F, C = (
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)
LEGAL = {(Q, R), (R, S), (R, F), (Q, C), (R, C), (F, Q), (C, Q), (Q, F)}
ALL_PAIRS = list(itertools.product(TaskStatus, repeat=2))


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL))
def test_legal_transitions_are_allowed(old: TaskStatus, new: TaskStatus) -> None:
    assert can_transition(old, new)
    check_transition(old, new)


@pytest.mark.parametrize(("old", "new"), [pair for pair in ALL_PAIRS if pair not in LEGAL])
def test_every_other_transition_is_refused(old: TaskStatus, new: TaskStatus) -> None:
    assert not can_transition(old, new)
    with pytest.raises(InvalidState, match=f"from {old} to {new}"):
        check_transition(old, new)


def test_who_may_be_cancelled_or_retried_follows_the_transitions() -> None:
    assert CANCELLABLE == {s for s in TaskStatus if can_transition(s, C)} == {Q, R}
    assert RETRYABLE == {s for s in TaskStatus if can_transition(s, Q)} == {F, C}


@pytest.mark.parametrize("status", list(TaskStatus))
def test_a_refusal_exactly_when_the_state_machine_forbids(status: TaskStatus) -> None:
    task = replace(Task.new(VideoRequest(prompt="a fox")), status=status)
    assert (cancel_refusal(task) is None) == can_transition(status, C)
    assert (retry_refusal(task) is None) == can_transition(status, Q)


def test_refusals_name_the_task_its_status_and_who_may() -> None:
    task = replace(Task.new(VideoRequest(prompt="a fox")), status=S)
    assert cancel_refusal(task) == (
        f"task {task.id[:8]} is already succeeded; only queued or running tasks can be cancelled"
    )
    assert retry_refusal(task) == (
        f"task {task.id[:8]} is succeeded; only failed or cancelled tasks can be retried"
    )


def test_terminal_and_active_sets() -> None:
    assert {s for s in TaskStatus if s.terminal} == {S, F, C}
    assert {s for s in TaskStatus if s.active} == {Q, R}


def test_a_valid_request_is_normalised() -> None:
    request = VideoRequest.parse(
        {"prompt": "  a fox  ", "model": "sora-2-pro", "duration": "25", "aspect_ratio": "9:16"}
    )
    assert (request.prompt, request.duration, request.aspect_ratio) == ("a fox", 25, "9:16")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"prompt": "   "}, "prompt", "blank"),
        ({"prompt": "x" * 4001}, "prompt", "longer than 4,000 characters"),
        ({"prompt": "x", "model": "sora-3"}, "model", "sora-2"),
        ({"prompt": "x", "duration": 12}, "duration", "10, 15 or 25"),
        ({"prompt": "x", "duration": 25}, "duration", "sora-2-pro"),
        ({"prompt": "x", "hd": True}, "hd", "sora-2-pro"),
        ({"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio", "16:9"),
        ({"prompt": "x", "images": ["ftp://host/a.png"]}, "images", "image 1"),
        ({"prompt": "x", "images": ["data:text/plain;base64,AAAA"]}, "images", "data URL"),
        ({"prompt": "x", "images": ["https://a/b.png"] * 5}, "images", "at most 4"),
        ({"prompt": "x", "colour": "red"}, "colour", "not a known field"),
    ],
)
def test_bad_requests_name_the_field(data: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        VideoRequest.parse(data)
    assert caught.value.field == field
    assert caught.value.message.startswith(field)
    assert words in caught.value.message


def test_pro_only_options_pass_with_sora_2_pro() -> None:
    request = VideoRequest.parse(
        {"prompt": "x", "model": "sora-2-pro", "hd": True, "images": ["https://a/b.png"]}
    )
    assert request.hd and request.images == ("https://a/b.png",)


def test_work_message_dedup_id_has_no_colon_and_parsing_is_strict() -> None:
    message = WorkMessage(task_id="abc", attempt=2, step="poll", seq=3)
    assert message.dedup_id == "abc-2-poll-3"
    assert WorkMessage.from_bytes(message.to_bytes()) == message
    for raw in (
        b"{",
        b'{"task_id":"abc","attempt":"2","step":"poll","seq":3}',
        b'{"task_id":"abc","attempt":2,"step":"poll","seq":3,"prompt":"x"}',
        b'{"task_id":"abc","attempt":2,"step":"wait","seq":3}',
    ):
        with pytest.raises(ValueError):
            WorkMessage.from_bytes(raw)


@pytest.mark.parametrize("status", [Q, R])
def test_only_a_terminal_status_ends_a_task(status: TaskStatus) -> None:
    with pytest.raises(ValueError, match=f"{status} is not an end"):
        end_changes(status, utcnow())
