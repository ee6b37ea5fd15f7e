"""The task, its state machine, the request rules and the queue message."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import InvalidRequest, InvalidState

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
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.RUNNING: frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED}),
}


def can_transition(old: TaskStatus, new: TaskStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: TaskStatus, new: TaskStatus) -> None:
    """Raise InvalidState unless `old -> new` is a legal transition."""
    if not can_transition(old, new):
        raise InvalidState(f"a task cannot go from {old} to {new}")


Model = Literal["sora-2", "sora-2-pro"]
AspectRatio = Literal["16:9", "9:16"]
Duration = Literal[10, 15, 25]

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+$", re.IGNORECASE)


class VideoRequest(BaseModel):
    """What a user asks the upstream to generate (validated before anything is stored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    model: Model = "sora-2"
    duration: Duration = 10
    aspect_ratio: AspectRatio = "16:9"
    hd: bool = False
    images: Annotated[tuple[str, ...], Field(max_length=MAX_IMAGES)] = ()

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
    def _pro_only_options(self) -> VideoRequest:
        if self.model != "sora-2-pro":
            if self.duration == 25:
                raise InvalidRequestRule("duration", "25 s videos need model sora-2-pro")
            if self.hd:
                raise InvalidRequestRule("hd", "hd needs model sora-2-pro")
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> VideoRequest:
        """Validate `data`, raising InvalidRequest that names the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_request_from(exc) from None


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

    model_config = ConfigDict(extra="ignore")

    id: str
    user_id: str = LOCAL_USER
    provider: str = "t8star"
    model: Model
    prompt: str
    aspect_ratio: AspectRatio
    duration: Duration
    hd: bool = False
    images: list[str] = Field(default_factory=list)
    status: TaskStatus = TaskStatus.QUEUED
    progress: int = 0
    attempt: int = 1
    upstream_task_id: str | None = None
    video_url: str | None = None
    error_message: str | None = None
    message_id: str | None = None
    polls: int = 0
    upstream_status: str | None = None
    last_polled_at: datetime | None = None
    next_poll_at: datetime | None = None
    step_lease_until: datetime | None = None
    upstream_key_ciphertext: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    version: int = 1

    @classmethod
    def new(
        cls, request: VideoRequest, user_id: str = LOCAL_USER, provider: str = "t8star"
    ) -> Task:
        return cls(
            id=new_task_id(),
            user_id=user_id,
            provider=provider,
            model=request.model,
            prompt=request.prompt,
            aspect_ratio=request.aspect_ratio,
            duration=request.duration,
            hd=request.hd,
            images=list(request.images),
        )

    @property
    def request(self) -> VideoRequest:
        return VideoRequest(
            prompt=self.prompt,
            model=self.model,
            duration=self.duration,
            aspect_ratio=self.aspect_ratio,
            hd=self.hd,
            images=tuple(self.images),
        )

    def public_dict(self) -> dict[str, Any]:
        """Every column a client may see (never the encrypted upstream key)."""
        return self.model_dump(mode="json", exclude={"upstream_key_ciphertext"})


TASK_COLUMNS: tuple[str, ...] = tuple(Task.model_fields)


EventKind = Literal["transition", "poll", "action", "submit"]


class TaskEvent(BaseModel):
    """One row of the append-only `task_events` history."""

    model_config = ConfigDict(extra="ignore")

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

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

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
