"""The task, its state machine, the request rules and the queue message."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import InvalidRequest, InvalidState
from core.text import unstorable

if TYPE_CHECKING:
    from core.upstream import Provider

MAX_PROMPT_CHARS = 4000
MAX_IMAGES = 4
MAX_IMAGE_URL_CHARS = 2048
MAX_DATA_URL_CHARS = 8 * 1024 * 1024
LOCAL_USER = "local"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_task_id() -> str:
    return str(uuid.uuid4())


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.RUNNING: frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED}),
}


def _leading_to(status: TaskStatus) -> frozenset[TaskStatus]:
    return frozenset(old for old, new in TRANSITIONS.items() if status in new)


# A cancel moves a task to CANCELLED and a retry queues it again: who may, is the state machine.
CANCELLABLE = _leading_to(TaskStatus.CANCELLED)
RETRYABLE = _leading_to(TaskStatus.QUEUED)


def can_transition(old: TaskStatus, new: TaskStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: TaskStatus, new: TaskStatus) -> None:
    """Raise InvalidState unless `old -> new` is a legal transition."""
    if not can_transition(old, new):
        raise InvalidState(f"a task cannot go from {old} to {new}")


def _either(statuses: frozenset[TaskStatus]) -> str:
    return " or ".join(status.value for status in TaskStatus if status in statuses)


def cancel_refusal(task: Task) -> str | None:
    """Why `task` cannot be cancelled in its status, or None when it can."""
    if task.status in CANCELLABLE:
        return None
    return (
        f"task {task.id[:8]} is already {task.status}; "
        f"only {_either(CANCELLABLE)} tasks can be cancelled"
    )


def retry_refusal(task: Task) -> str | None:
    """Why `task` cannot be retried in its status, or None when it can."""
    if task.status in RETRYABLE:
        return None
    return f"task {task.id[:8]} is {task.status}; only {_either(RETRYABLE)} tasks can be retried"


def end_changes(status: TaskStatus, at: datetime) -> dict[str, Any]:
    """The columns every end of a task sets: when, no further step, and no user key kept."""
    if status not in TERMINAL:
        raise ValueError(f"{status} is not an end of a task")
    # The user's own upstream key is erased at the end; a retry must bring it again.
    return {
        "status": status,
        "completed_at": at,
        "next_poll_at": None,
        "step_lease_until": None,
        "upstream_key_ciphertext": None,
    }


_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+$", re.IGNORECASE)


# Every model here builds its validator on first use (defer_build), not at import: a command
# that never validates a request or a message does not pay for building their schemas.
class VideoRequest(BaseModel):
    """What a user asks the upstream to generate (validated before anything is stored).

    The generic rules live here; the provider's own (models, durations, aspect ratios, hd) and
    its defaults come from the provider the request names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    # Left out, these four take the provider's defaults (`_provider_defaults` fills them in
    # before validation); the empty values only keep type checkers from asking for them.
    provider: str = ""
    model: str = ""
    duration: int = 0
    aspect_ratio: str = ""
    hd: bool = False
    images: Annotated[tuple[str, ...], Field(max_length=MAX_IMAGES)] = ()

    @model_validator(mode="before")
    @classmethod
    def _provider_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        provider = _provider(data.get("provider"))
        return {**provider.defaults, **data, "provider": provider.name}

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # Refused here, on every store alike, so no store answers "try again" to a fixed input.
        for text in value if isinstance(value, list | tuple) else (value,):
            if isinstance(text, str) and (why := unstorable(text)):
                raise ValueError(why)
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_from_text(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("images")
    @classmethod
    def _images_are_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, image in enumerate(value):
            if image.startswith("data:"):
                if len(image) > MAX_DATA_URL_CHARS or not _DATA_URL.match(image):
                    raise ValueError(f"image {index + 1} is not a base64 image data URL")
            elif len(image) > MAX_IMAGE_URL_CHARS or not _URL.match(image):
                raise ValueError(f"image {index + 1} is not an http(s) URL or a data URL")
        return value

    @model_validator(mode="after")
    def _provider_rules(self) -> VideoRequest:
        _provider(self.provider).check(self)
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> VideoRequest:
        """Validate `data`, raising InvalidRequest that names the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_request_from(exc) from None


def _provider(name: str | None) -> Provider:
    # The providers' rules import this module, so their registry is imported when first asked.
    from core.upstream import DEFAULT_PROVIDER, provider_for

    try:
        return provider_for(name or DEFAULT_PROVIDER)
    except InvalidRequest as exc:
        raise InvalidRequestRule("provider", exc.message.removeprefix("provider: ")) from None


class InvalidRequestRule(ValueError):
    """A cross-field rule broken; carries the field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def invalid_request_from(exc: ValidationError) -> InvalidRequest:
    """Turn pydantic's error list into one message that names the field and the reason."""
    from core.messages import problems

    field, reason = problems(exc)[0]
    return InvalidRequest(f"{field}: {reason}", field=field)


class Task(BaseModel):
    """One row of `video_tasks`."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str
    user_id: str = LOCAL_USER
    provider: str
    model: str
    prompt: str
    aspect_ratio: str
    duration: int
    hd: bool = False
    # The images themselves live in `task_images`, read only by the submit (store.images).
    image_count: int = 0
    image_bytes: int = 0
    status: TaskStatus = TaskStatus.QUEUED
    progress: int = 0
    attempt: int = 1
    upstream_task_id: str | None = None
    video_url: str | None = None
    error_message: str | None = None
    message_id: str | None = None
    polls: int = 0
    # Polls in a row whose reported progress did not move (a poll without a progress counts
    # neither way); `core.insight` calls a running task with enough of them stalled.
    polls_without_progress: int = 0
    upstream_status: str | None = None
    last_polled_at: datetime | None = None
    next_poll_at: datetime | None = None
    step_lease_until: datetime | None = None
    upstream_key_ciphertext: str | None = None
    # The attempt was queued with the submitter's own upstream key; stays set once the key
    # itself is erased at the end, so a retry knows it needs the key again.
    own_key: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    version: int = 1

    @classmethod
    def new(cls, request: VideoRequest, user_id: str = LOCAL_USER) -> Task:
        return cls(
            id=new_task_id(),
            user_id=user_id,
            provider=request.provider,
            model=request.model,
            prompt=request.prompt,
            aspect_ratio=request.aspect_ratio,
            duration=request.duration,
            hd=request.hd,
            image_count=len(request.images),
            image_bytes=sum(len(image.encode()) for image in request.images),
        )

    def request(self, images: tuple[str, ...] = ()) -> VideoRequest:
        """The request this task was made from, with the images the store keeps apart."""
        return VideoRequest(
            prompt=self.prompt,
            provider=self.provider,
            model=self.model,
            duration=self.duration,
            aspect_ratio=self.aspect_ratio,
            hd=self.hd,
            images=images,
        )

    def step_claimed(self, now: datetime) -> bool:
        """Whether a delivery holds this task's step lease (a submit or a poll in flight)."""
        return self.step_lease_until is not None and self.step_lease_until > now

    def public_dict(self) -> dict[str, Any]:
        """Every column a client may see (never the encrypted upstream key)."""
        return self.model_dump(mode="json", exclude={"upstream_key_ciphertext"})


TASK_COLUMNS: tuple[str, ...] = tuple(Task.model_fields)


EventKind = Literal["transition", "poll", "action", "submit"]


class TaskEvent(BaseModel):
    """One row of the append-only `task_events` history."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    task_id: str
    kind: EventKind
    attempt: int
    at: datetime = Field(default_factory=utcnow)
    from_status: TaskStatus | None = None
    to_status: TaskStatus | None = None
    actor: str | None = None
    upstream_status: str | None = None
    progress: int | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str | None = None


Step = Literal["submit", "poll"]


class WorkMessage(BaseModel):
    """The body of a queue message: which step of which attempt of which task, and nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    task_id: Annotated[str, Field(min_length=1, max_length=64)]
    attempt: Annotated[int, Field(ge=1)]
    step: Step
    seq: Annotated[int, Field(ge=1)]

    @property
    def dedup_id(self) -> str:
        # QStash refuses ':' in deduplication ids.
        return f"{self.task_id}-{self.attempt}-{self.step}-{self.seq}"

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> WorkMessage:
        return cls.model_validate_json(raw)


ChangeOp = Literal["SYNC", "INSERT", "UPDATE", "DELETE"]


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One event of a store's change feed.

    `SYNC` (with no task) means the feed has just (re)subscribed: load a snapshot now, then apply
    the events that follow, keeping the highest `version` per task.
    """

    op: ChangeOp
    task: Task | None = None
