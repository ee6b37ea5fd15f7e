"""The task API's answer shape, its error codes, and the guarded reading of request bodies.

Every answer is `{"ok", "data", "error"}`; an error carries a stable `code` a client can branch
on and a `message` a person can act on, never a stack trace or a secret.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from core.errors import (
    InvalidRequest,
    InvalidState,
    QueueError,
    StoreError,
    TaskNotFound,
    VideoqError,
)
from core.models import MAX_DATA_URL_CHARS, MAX_IMAGES

log = logging.getLogger(__name__)


class ApiError(VideoqError):
    """An error of the HTTP layer itself, with the status it answers."""

    code = "internal"
    status = 500


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    status = 413


class MalformedJson(ApiError):
    code = "malformed_json"
    status = 400


class OverLimit(ApiError):
    """A per-user limit of the task API refused the call; come back after `retry_after` s."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(OverLimit):
    code = "rate_limited"


class QuotaExceeded(OverLimit):
    code = "quota_exceeded"


class Unavailable(ApiError):
    """Something the server depends on (store, key set) cannot be reached right now."""

    code = "unavailable"
    status = 503


_STATUS: dict[type[VideoqError], int] = {
    InvalidRequest: 422,
    TaskNotFound: 404,
    InvalidState: 409,
}
_BUSY = "the service cannot reach its task store or queue right now; try again shortly"


def ok(data: Any, status: int = 200) -> JSONResponse:
    """A successful answer."""
    return JSONResponse({"ok": True, "data": data, "error": None}, status_code=status)


def fail(
    code: str,
    message: str,
    status: int,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A failed answer with a stable error code and a message for a person."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    body = {"ok": False, "data": None, "error": error}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: BaseException) -> JSONResponse:
    """The answer for an exception raised while serving a task API call."""
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        if isinstance(exc, OverLimit):
            headers = {"Retry-After": str(exc.retry_after)}
        return fail(exc.code, exc.message, exc.status, headers=headers)
    if isinstance(exc, InvalidRequest):
        return fail(exc.code, exc.message, 422, field=exc.field)
    if isinstance(exc, TaskNotFound | InvalidState):
        return fail(exc.code, exc.message, _STATUS[type(exc)])
    if isinstance(exc, StoreError | QueueError):
        # The real cause goes to the log; the client learns only that it should come back.
        log.warning("task API call failed: %s", exc.message)
        return fail("unavailable", _BUSY, 503)
    log.error("task API call failed", exc_info=exc)
    return fail("internal", "internal error; it has been logged", 500)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with PayloadTooLarge as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise MalformedJson("the client went away before the body was complete") from exc
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body parsed as one JSON object (MalformedJson, InvalidRequest or PayloadTooLarge)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise MalformedJson("the body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise MalformedJson(f"the body is not valid JSON: {_where(exc)}") from None
    except RecursionError:
        raise MalformedJson("the body is not valid JSON: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request: the body must be a JSON object", field="request")
    return data


def _where(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "it is not UTF-8 text"


@dataclass(frozen=True)
class BodyLimits:
    """Largest request bodies accepted, in bytes."""

    # A request may carry MAX_IMAGES data-URL images of up to MAX_DATA_URL_CHARS each.
    api: int = MAX_IMAGES * MAX_DATA_URL_CHARS + 64 * 1024
    # A queue message is about a hundred bytes.
    worker: int = 64 * 1024
