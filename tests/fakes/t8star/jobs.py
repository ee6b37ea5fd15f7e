"""The fake T8Star's jobs: how each unfolds (JobScript), scripted faults, and the status body."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_KEY = "sk-fake-t8star-0123456789abcdef0123456789abcdef"
RAW_BODY_MARKER = "FAKE-T8STAR-RAW-BODY-7f3c"
GENERATIONS = "/v2/videos/generations"
Endpoint = Literal["submit", "status"]


@dataclass(frozen=True)
class JobScript:
    """How one upstream job unfolds, counted in its status polls (or in wall seconds)."""

    polls: int = 3  # the poll that gets the final answer (1 = the very first poll)
    seconds: float | None = None  # if set: final once this many seconds passed since submit
    outcome: Literal["success", "failure"] = "success"
    reason: str = "生成失败，请重试"
    progress: tuple[int, ...] | None = None  # progress of the polls before the end
    queued_polls: int = 0  # the first polls answer NOT_START
    not_found_polls: int = 0  # the first polls answer 404 (a just-created id)
    url_field: str | None = "output"  # "output", "video_url", or None: SUCCESS without a URL
    video_url: str | None = None
    task_id: str | None = None  # answer this id instead of a fresh uuid

    @classmethod
    def late_failure(cls, reason: str = "Content policy violation", polls: int = 4) -> JobScript:
        """A job moderation kills after it reported 90 % or more."""
        return cls(polls=polls, outcome="failure", reason=reason, progress=(40, 75, 93))


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour of the next matching call."""

    kind: Literal["http", "slow", "malformed", "status_value"]
    http_status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    value: str = ""

    @classmethod
    def http(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("http", http_status=status, retry_after=retry_after)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "7") -> Fault:
        return cls.http(429, retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` (beyond the client's read timeout)."""
        return cls("slow", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 whose body is not JSON."""
        return cls("malformed")

    @classmethod
    def status_value(cls, value: str) -> Fault:
        """A normal status answer (it counts as a poll) whose `status` is `value` (e.g. WEIRD)."""
        return cls("status_value", value=value)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    authorization: str | None
    body: Any  # the decoded JSON, or None
    task_id: str | None  # the polled id, or the id a submit created
    answered: int | None = None  # the HTTP status sent back; None while still answering


@dataclass
class Job:
    task_id: str
    script: JobScript
    prompt: str
    submitted: float
    polls: int = 0
    started: float = 0.0
    finished: float = 0.0
    notify_hook: str | None = None  # the URL the submit asked to be called back on


def ends_at(job: Job) -> float | None:
    """When a job scripted in seconds ends (None: it ends on a poll, not at a time)."""
    seconds = job.script.seconds
    return None if seconds is None else job.submitted + seconds


def advance(job: Job) -> dict[str, Any] | None:
    """Count one poll and build the documented status body (None: answer 404)."""
    job.polls += 1
    poll = job.polls - job.script.not_found_polls
    return None if poll <= 0 else status_view(job, poll)


def status_view(job: Job, poll: int) -> dict[str, Any]:
    """The documented status body of `job` as its `poll`-th answered poll would see it."""
    script, now = job.script, time.time()
    if script.seconds is not None:
        fraction = (now - job.submitted) / script.seconds if script.seconds > 0 else 1.0
        done, progress = fraction >= 1.0, min(99, int(99 * fraction))
    else:
        done, progress = poll >= script.polls, _scripted_progress(script, poll)
    if poll <= script.queued_polls and not done:
        return _status_body(job, "NOT_START", 0)
    job.started = job.started or now
    if not done:
        return _status_body(job, "IN_PROGRESS", progress)
    job.finished = job.finished or now
    return _status_body(job, "SUCCESS" if script.outcome == "success" else "FAILURE", 100)


def _scripted_progress(script: JobScript, poll: int) -> int:
    running = poll - script.queued_polls  # 1 for the first IN_PROGRESS poll
    if script.progress:
        return script.progress[min(running, len(script.progress)) - 1]
    return min(99, 100 * poll // max(script.polls, 1))


def _status_body(job: Job, status: str, progress: int) -> dict[str, Any]:
    script = job.script
    data = None
    if status == "SUCCESS" and script.url_field is not None:
        url = script.video_url or f"https://filesystem.site/cdn/20250901/{job.task_id[:8]}.mp4"
        data = {script.url_field: url}
    return {
        "task_id": job.task_id,
        "platform": "openai",
        "action": "sora-videos",
        "status": status,
        "fail_reason": script.reason if status == "FAILURE" else "",
        "submit_time": int(job.submitted),
        "start_time": int(job.started),
        "finish_time": int(job.finished),
        "progress": f"{progress}%",
        "data": data,
        "search_item": "",
    }


def invalid_submit(body: Any) -> str | None:
    """What the real API would refuse in a submit body, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    checks = [
        (isinstance(body.get("prompt"), str) and body["prompt"].strip() != "", "prompt"),
        (body.get("model") in ("sora-2", "sora-2-pro"), "model"),
        (body.get("aspect_ratio", "16:9") in ("16:9", "9:16"), "aspect_ratio"),
        (body.get("duration") in ("10", "15", "25"), "duration must be the string 10, 15 or 25"),
        (isinstance(body.get("hd", False), bool), "hd"),
        (body.get("duration") != "25" or body.get("model") == "sora-2-pro", "25 s needs pro"),
        (_string_list(body.get("images", [])), "images"),
    ]
    return next((f"invalid {what}" for ok, what in checks if not ok), None)


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
