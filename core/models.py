"""The task, its state machine, the request rules and the queue message."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec.json
from msgspec import UNSET, Meta, Struct, UnsetType, ValidationError, field
from msgspec.structs import force_setattr

from core.errors import FieldRefused, InvalidRequest, InvalidState
from core.text import unstorable

if TYPE_CHECKING:
    from collections.abc import Mapping

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


# Patterns, not compiled ones: `re` compiles them on the first request with images, not at
# every start-up of every command.
_URL = r"^https?://[^\s/$.?#][^\s]*$"
_DATA_URL = r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+$"


class VideoRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user asks the upstream to generate (validated before anything is stored).

    The generic rules live here; the provider's own (models, durations, aspect ratios, hd) and
    its defaults come from the provider the request names. Every rule runs in `__post_init__`,
    so a request built in code, decoded or parsed is held to the same rules.
    """

    prompt: Annotated[str, Meta(max_length=MAX_PROMPT_CHARS)]
    # Left out, these four take the provider's defaults (`__post_init__` fills them in); UNSET
    # tells "left out" from an explicit empty value, which the provider's rules refuse.
    if TYPE_CHECKING:
        provider: str = ""
        model: str = ""
        duration: int = 0
        aspect_ratio: str = ""
    else:
        provider: str | UnsetType = UNSET
        model: str | UnsetType = UNSET
        duration: int | UnsetType = UNSET
        aspect_ratio: str | UnsetType = UNSET
    hd: bool = False
    images: Annotated[tuple[str, ...], Meta(max_length=MAX_IMAGES)] = ()

    def __post_init__(self) -> None:
        provider = _provider(None if self.provider is UNSET else self.provider)
        force_setattr(self, "provider", provider.name)
        for name, value in provider.defaults.items():
            if getattr(self, name) is UNSET:
                force_setattr(self, name, value)
        self._storable_text()
        force_setattr(self, "prompt", _prompt_not_blank(self.prompt))
        _images_are_urls(self.images)
        provider.check(self)

    def _storable_text(self) -> None:
        # Refused here, on every store alike, so no store answers "try again" to a fixed input.
        for name in self.__struct_fields__:
            value = getattr(self, name)
            for text in value if isinstance(value, tuple) else (value,):
                if isinstance(text, str) and (why := unstorable(text)):
                    raise InvalidRequestRule(name, why)

    @classmethod
    def validate(cls, data: dict[str, Any]) -> VideoRequest:
        """`data` as a request, or msgspec.ValidationError naming the first bad field."""
        return msgspec.convert(_duration_from_text(data), cls, strict=False)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> VideoRequest:
        """Validate `data`, raising InvalidRequest that names the first bad field."""
        try:
            return cls.validate(data)
        except msgspec.ValidationError as exc:
            raise invalid_request_from(exc) from None


def _prompt_not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidRequestRule("prompt", "must not be blank")
    return value


def _duration_from_text(data: dict[str, Any]) -> dict[str, Any]:
    # A form or a flag gives the duration as text, spaces and all.
    value = data.get("duration")
    if isinstance(value, str) and value.strip().isdigit():
        return {**data, "duration": int(value)}
    return data


def _images_are_urls(images: tuple[str, ...]) -> None:
    for index, image in enumerate(images):
        if image.startswith("data:"):
            if len(image) > MAX_DATA_URL_CHARS or not re.match(_DATA_URL, image, re.IGNORECASE):
                raise InvalidRequestRule(
                    "images", f"image {index + 1} is not a base64 image data URL"
                )
        elif len(image) > MAX_IMAGE_URL_CHARS or not re.match(_URL, image, re.IGNORECASE):
            raise InvalidRequestRule(
                "images", f"image {index + 1} is not an http(s) URL or a data URL"
            )


def _provider(name: str | None) -> Provider:
    # The providers' rules import this module, so their registry is imported when first asked.
    from core.upstream import DEFAULT_PROVIDER, provider_for

    try:
        return provider_for(name or DEFAULT_PROVIDER)
    except InvalidRequest as exc:
        raise InvalidRequestRule("provider", exc.message.removeprefix("provider: ")) from None


class InvalidRequestRule(FieldRefused):
    """A rule of the request broken; carries the field to blame."""


def invalid_request_from(exc: ValidationError) -> InvalidRequest:
    """Turn msgspec's error into one message that names the field and the reason."""
    from core.messages import problem

    field, reason = problem(exc)
    return InvalidRequest(f"{field}: {reason}", field=field)


class Task(Struct, kw_only=True):
    """One row of `video_tasks`."""

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
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    queued_at: datetime = field(default_factory=utcnow)
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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """A row from elsewhere (JSON, another writer) as a Task, checked field by field."""
        return msgspec.convert(row, cls, strict=False)

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
        values = json_dict(self)
        del values["upstream_key_ciphertext"]
        return values


def json_dict(value: Struct) -> dict[str, Any]:
    """`value` as JSON-ready builtins: times as ISO 8601 strings, statuses as their names."""
    encoded: dict[str, Any] = msgspec.to_builtins(value)
    return encoded


TASK_COLUMNS: tuple[str, ...] = Task.__struct_fields__


EventKind = Literal["transition", "poll", "action", "submit"]


class TaskEvent(Struct, kw_only=True):
    """One row of the append-only `task_events` history."""

    task_id: str
    kind: EventKind
    attempt: int
    at: datetime = field(default_factory=utcnow)
    from_status: TaskStatus | None = None
    to_status: TaskStatus | None = None
    actor: str | None = None
    upstream_status: str | None = None
    progress: int | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskEvent:
        """A stored history row as an event, checked field by field."""
        return msgspec.convert(row, cls, strict=False)


Step = Literal["submit", "poll"]


class WorkMessage(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a queue message: which step of which attempt of which task, and nothing else.

    Decoded strictly (no "2" for 2) and whole: a field it does not know is refused.
    """

    task_id: Annotated[str, Meta(min_length=1, max_length=64)]
    attempt: Annotated[int, Meta(ge=1)]
    step: Step
    seq: Annotated[int, Meta(ge=1)]

    @property
    def dedup_id(self) -> str:
        # QStash refuses ':' in deduplication ids.
        return f"{self.task_id}-{self.attempt}-{self.step}-{self.seq}"

    def to_bytes(self) -> bytes:
        return _MESSAGE_ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> WorkMessage:
        """The message in `raw`, or msgspec.DecodeError (a ValueError) if it is not one."""
        return _MESSAGE_DECODER.decode(raw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkMessage:
        """The message `data` holds, checked as strictly as `from_bytes`."""
        return msgspec.convert(data, cls)


_MESSAGE_ENCODER = msgspec.json.Encoder()
_MESSAGE_DECODER = msgspec.json.Decoder(WorkMessage)

ChangeOp = Literal["SYNC", "INSERT", "UPDATE", "DELETE"]


class TaskChange(Struct, frozen=True):
    """One event of a store's change feed.

    `SYNC` (with no task) means the feed has just (re)subscribed: load a snapshot now, then apply
    the events that follow, keeping the highest `version` per task.
    """

    op: ChangeOp
    task: Task | None = None
