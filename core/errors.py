"""The one root of every error videoq reports to a person."""

from __future__ import annotations


class VideoqError(Exception):
    """An error with a message a person can act on."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(VideoqError):
    """The input is not acceptable; `field` names the culprit."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TaskNotFound(VideoqError):
    code = "not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class InvalidState(VideoqError):
    """The action does not apply to the task in its current status."""

    code = "invalid_state"


class ConfigError(VideoqError):
    code = "config_error"


class StoreError(VideoqError):
    """The task store could not be read or written."""

    code = "store_error"


class RowUnreadable(StoreError):
    """A stored row that does not decode as a task; `why` names what is wrong with it."""

    code = "row_unreadable"

    def __init__(self, task_id: str, why: str) -> None:
        super().__init__(f"task {task_id}: its stored row cannot be read ({why})")
        self.task_id = task_id
        self.why = why


class QueueError(VideoqError):
    """A message could not be published."""

    code = "queue_error"


class SignatureError(VideoqError):
    """A delivery's signature was missing or did not verify."""

    code = "bad_signature"


class UpstreamError(VideoqError):
    """The upstream video API refused or failed a call.

    `transient` errors are worth retrying (timeouts, 429, 5xx, network); the others are final.
    """

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.http_status = http_status
        self.retry_after = retry_after


class FieldRefused(ValueError):
    """A value a rule of ours refuses (raised while msgspec checks it); names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
