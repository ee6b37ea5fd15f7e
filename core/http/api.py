"""The task API for web clients: generate, cancel, retry, list and read tasks, per signed-in user.

Every call goes through `core.service`, like the CLI and the dashboard; this module only turns
HTTP into those calls and their results (or errors) into the envelope.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import InvalidRequest, TaskNotFound
from core.http.auth import UserAuth
from core.http.envelope import BodyLimits, error_response, ok, read_json_object
from core.http.quota import check_submit
from core.models import TaskStatus, VideoRequest, json_dict
from core.runtime import Runtime
from core.service import BYOK_HEADER, MAX_LIST_LIMIT

log = logging.getLogger(__name__)

PREFIX = "/api/v1/video"
DEFAULT_LIST_LIMIT = 100
MAX_KEY_CHARS = 512
_TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces

Handler = Callable[["TaskApi", Request], Awaitable[Response]]


def _answers_errors(handler: Handler) -> Handler:
    """Turn any exception of `handler` into an enveloped error answer."""

    @functools.wraps(handler)
    async def guarded(self: TaskApi, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an enveloped answer
            return error_response(exc)

    return guarded


class TaskApi:
    """The `/api/v1/video/...` endpoints on one runtime."""

    def __init__(self, runtime: Runtime, auth: UserAuth, limits: BodyLimits) -> None:
        self.runtime = runtime
        self.service = runtime.service
        self.auth = auth
        self.limits = limits

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/generate", self.generate, methods=["POST"]),
            Route(PREFIX + "/cancel/{task_id}", self.cancel, methods=["POST"]),
            Route(PREFIX + "/retry/{task_id}", self.retry, methods=["POST"]),
            Route(f"{PREFIX}/tasks", self.list_tasks, methods=["GET"]),
            Route(PREFIX + "/tasks/{task_id}", self.get_task, methods=["GET"]),
        ]

    @_answers_errors
    async def generate(self, request: Request) -> Response:
        """Validate and store a request as a queued task; the upstream call happens later."""
        user_id = await self._user(request)
        video = VideoRequest.parse(await read_json_object(request, self.limits.api))
        own_key = self._own_key(request)
        await check_submit(self.runtime.store, self.runtime.settings, user_id, video)
        task = await self.service.submit(
            video, user_id=user_id, actor=_actor(user_id), upstream_api_key=own_key
        )
        return ok({"task_id": task.id}, status=202)

    @_answers_errors
    async def cancel(self, request: Request) -> Response:
        """Cancel one of the caller's queued or running tasks."""
        user_id = await self._user(request)
        task = await self.service.cancel(_task_id(request), actor=_actor(user_id), user_id=user_id)
        return ok({"task": task.public_dict()})

    @_answers_errors
    async def retry(self, request: Request) -> Response:
        """Queue one of the caller's failed or cancelled tasks again, as a new attempt."""
        user_id = await self._user(request)
        own_key = self._own_key(request)
        task = await self.service.retry(
            _task_id(request), actor=_actor(user_id), user_id=user_id, upstream_api_key=own_key
        )
        return ok({"task": task.public_dict()})

    @_answers_errors
    async def list_tasks(self, request: Request) -> Response:
        """The caller's tasks, newest first, optionally of some statuses only."""
        user_id = await self._user(request)
        statuses = _statuses(request)
        limit = _limit(request)
        tasks = await self.service.list(statuses=statuses, user_id=user_id, limit=limit)
        return ok({"tasks": [task.public_dict() for task in tasks]})

    @_answers_errors
    async def get_task(self, request: Request) -> Response:
        """One of the caller's tasks with its history."""
        user_id = await self._user(request)
        detail = await self.service.detail(_task_id(request), user_id=user_id)
        history = [json_dict(event) for event in detail.history]
        return ok({"task": detail.task.public_dict(), "history": history})

    async def _user(self, request: Request) -> str:
        return await self.auth.user_id(request.headers.get("authorization"))

    def _own_key(self, request: Request) -> str | None:
        """The caller's own upstream key (BYOK), if sent and usable on this server."""
        raw = request.headers.get(BYOK_HEADER)
        if raw is None:
            return None
        key = raw.strip()
        if len(key) > MAX_KEY_CHARS or not _KEY_CHARS.match(key):
            raise _bad_key(f"must be an API key of at most {MAX_KEY_CHARS} printable characters")
        if self.runtime.key_box is None:
            raise _bad_key(
                "this server cannot keep your own upstream key (VIDEOQ_SECRET_KEY is not set); "
                "send the request without it"
            )
        if self.runtime.upstream.name == "simulator":
            raise _bad_key(
                "this server runs the upstream simulator (no T8STAR_API_KEY), which would not "
                "use your key; send the request without it"
            )
        return key


def _bad_key(why: str) -> InvalidRequest:
    # The key itself is never repeated in an answer.
    return InvalidRequest(f"{BYOK_HEADER}: {why}", field=BYOK_HEADER)


def _actor(user_id: str) -> str:
    return f"api:{user_id}"


def _task_id(request: Request) -> str:
    task_id: str = request.path_params["task_id"]
    if not _TASK_ID.match(task_id):
        raise TaskNotFound(task_id[:64])
    return task_id


def _statuses(request: Request) -> list[TaskStatus] | None:
    values = [
        part.strip()
        for value in request.query_params.getlist("status")
        for part in value.split(",")
        if part.strip()
    ]
    if not values:
        return None
    known = {status.value: status for status in TaskStatus}
    unknown = [value for value in values if value not in known]
    if unknown:
        raise InvalidRequest(
            f"status: {unknown[0][:32]!r} is not one of {', '.join(known)}", field="status"
        )
    return [known[value] for value in values]


def _limit(request: Request) -> int:
    raw: Any = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIST_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise InvalidRequest(
            f"limit: must be a whole number from 1 to {MAX_LIST_LIMIT}", field="limit"
        )
    return int(raw)
