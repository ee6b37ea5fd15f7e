"""FakeT8Star: the T8Star video API on a loopback port, in a thread, scriptable per job and fault.

It answers exactly the documented shapes (see shared/reference/t8star.md), checks the Bearer key,
and records every request so tests can count submits per prompt and polls per upstream id.
Its error bodies carry `RAW_BODY_MARKER` and echo the presented key, so a test can prove that
neither ever reaches an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import LoopbackServer
from tests.fakes.t8star.hooks import HookCall, HookCaller
from tests.fakes.t8star.jobs import (
    DEFAULT_KEY,
    GENERATIONS,
    RAW_BODY_MARKER,
    Endpoint,
    Fault,
    Job,
    JobScript,
    Recorded,
    advance,
    ends_at,
    invalid_submit,
    status_view,
)
from tests.waiting import TIMEOUT, wait_until


@dataclass
class _FaultRule:
    endpoint: Endpoint
    fault: Fault
    left: int | None
    task_id: str | None = None


@dataclass
class _State:
    keys: set[str]
    default_script: JobScript = field(default_factory=JobScript)
    next_scripts: list[JobScript] = field(default_factory=list)
    prompt_scripts: dict[str, JobScript] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    faults: list[_FaultRule] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


class FakeT8Star:
    """A T8Star double that the real `T8StarUpstream` (httpx) talks to over loopback HTTP."""

    def __init__(self, api_keys: tuple[str, ...] = (DEFAULT_KEY,)) -> None:
        self._state = _State(keys=set(api_keys))
        self._lock = threading.Lock()
        self._stopping: asyncio.Event | None = None
        self._hooks = HookCaller(self._hook_snapshot)
        self._server = LoopbackServer(
            "fake-t8star", self._running, on_stop=self._cut_slow_answers_short
        )

    # Life cycle.

    @property
    def base_url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        """Serve on 127.0.0.1 (port chosen by the OS) from a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Cut slow answers short, stop serving and wait for the thread."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Starlette]:
        self._stopping = asyncio.Event()
        await self._hooks.open()
        try:
            yield Starlette(
                routes=[
                    Route(GENERATIONS, self._submit, methods=["POST"]),
                    Route(GENERATIONS + "/{task_id:path}", self._status, methods=["GET"]),
                ]
            )
        finally:
            await self._hooks.close()

    async def _cut_slow_answers_short(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    # Scripting (callable from any thread).

    def script_default(self, script: JobScript) -> None:
        """The script of every job no other rule scripts."""
        with self._lock:
            self._state.default_script = script

    def script_next(self, *scripts: JobScript) -> None:
        """Scripts for the next submits, one each, in order."""
        with self._lock:
            self._state.next_scripts.extend(scripts)

    def script_prompt(self, prompt: str, script: JobScript) -> None:
        """The script of every job submitted with exactly this prompt."""
        with self._lock:
            self._state.prompt_scripts[prompt] = script

    def script_task(self, task_id: str, script: JobScript) -> None:
        """Change the script of an existing job (its poll count is kept)."""
        with self._lock:
            self._state.jobs[task_id].script = script

    def forget(self, task_id: str) -> None:
        """Drop a job: its status answers 404 from now on."""
        with self._lock:
            self._state.jobs.pop(task_id, None)

    def fault(
        self, endpoint: Endpoint, fault: Fault, times: int | None = 1, task_id: str | None = None
    ) -> None:
        """Misbehave on the next `times` calls of `endpoint` (None: until `clear_faults`)."""
        with self._lock:
            self._state.faults.append(_FaultRule(endpoint, fault, times, task_id))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    # What happened (callable from any thread).

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def submits(self, prompt: str | None = None) -> list[Recorded]:
        """Submit calls received (all, or those with this prompt)."""
        return [
            r for r in self.requests
            if r.method == "POST" and (prompt is None or _prompt(r.body) == prompt)
        ]  # fmt: skip

    def status_calls(self, task_id: str | None = None) -> list[Recorded]:
        """Status calls received (all, or those for this upstream id)."""
        return [
            r for r in self.requests
            if r.method == "GET" and (task_id is None or r.task_id == task_id)
        ]  # fmt: skip

    def hook_calls(self, task_id: str | None = None) -> list[HookCall]:
        """Notify-hook calls made (all, or those for this upstream id), oldest first."""
        return [call for call in self._hooks.calls if task_id in (None, call.task_id)]

    def silence_hooks(self) -> None:
        """Lose every notify-hook call from now on (the safety-net polls must carry on)."""
        self._hooks.silenced = True

    async def notify(self, task_id: str) -> int | None:
        """Call the job's notify hook now, from the caller's loop; its HTTP status."""
        async with httpx.AsyncClient(timeout=10) as client:
            return await self._hooks.call(task_id, client)

    def task_ids(self) -> list[str]:
        """Ids of the jobs created so far, oldest first."""
        with self._lock:
            return list(self._state.jobs)

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "the fake"
    ) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout` seconds."""
        await wait_until(predicate, what, timeout)

    # The API.

    async def _submit(self, request: Request) -> Response:
        body = await _json_or_none(request)
        index = self._record(request, body, None)
        response, task_id = await self._answer_submit(request, body)
        self._answered(index, response.status_code, task_id)
        return response

    async def _answer_submit(self, request: Request, body: Any) -> tuple[Response, str | None]:
        fault = self._take_fault("submit", None)
        if fault is not None and (early := await self._apply(fault)) is not None:
            return early, None
        if (refusal := self._refuse_key(request)) is not None:
            return refusal, None
        problem = invalid_submit(body)
        if problem is not None:
            return _error(400, problem, "invalid_request_error"), None
        task_id = self._create_job(body["prompt"], body.get("notify_hook"))
        return JSONResponse({"task_id": task_id}), task_id

    async def _status(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        index = self._record(request, None, task_id)
        response = await self._answer_status(request, task_id)
        self._answered(index, response.status_code, task_id)
        return response

    async def _answer_status(self, request: Request, task_id: str) -> Response:
        fault = self._take_fault("status", task_id)
        if fault is not None and (early := await self._apply(fault)) is not None:
            return early
        if (refusal := self._refuse_key(request)) is not None:
            return refusal
        with self._lock:
            job = self._state.jobs.get(task_id)
            if job is None:
                return _error(404, "task not found", "not_found")
            body = advance(job)
        if body is None:
            return _error(404, "task not found", "not_found")
        if fault is not None and fault.kind == "status_value":
            body["status"] = fault.value
        return JSONResponse(body)

    async def _apply(self, fault: Fault) -> Response | None:
        """Answer for the fault, or None to go on answering normally."""
        if fault.kind == "http":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return _error(
                fault.http_status, "simulated upstream trouble", "upstream_error", headers
            )
        if fault.kind == "malformed":
            text = f"<html>{RAW_BODY_MARKER} 502 Bad Gateway</html>"
            return Response(text, media_type="application/json")
        if fault.kind == "slow":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), fault.seconds)
            except TimeoutError:
                pass
        return None

    def _take_fault(self, endpoint: Endpoint, task_id: str | None) -> Fault | None:
        with self._lock:
            for rule in self._state.faults:
                if rule.endpoint == endpoint and rule.task_id in (None, task_id):
                    if rule.left is not None:
                        rule.left -= 1
                        if rule.left <= 0:
                            self._state.faults.remove(rule)
                    return rule.fault
        return None

    def _refuse_key(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else ""
        if key in self._state.keys:
            return None
        # Real relays echo the token they refused; the client must not repeat it.
        return _error(401, f"invalid token: {key!r}", "authentication_error")

    def _create_job(self, prompt: str, notify_hook: Any) -> str:
        with self._lock:
            state = self._state
            script = state.prompt_scripts.get(prompt)
            if script is None:
                script = state.next_scripts.pop(0) if state.next_scripts else state.default_script
            task_id = script.task_id or str(uuid.uuid4())
            hook = notify_hook if isinstance(notify_hook, str) else None
            job = state.jobs[task_id] = Job(task_id, script, prompt, time.time(), notify_hook=hook)
        end = ends_at(job)
        if hook is not None and end is not None:
            self._hooks.call_at_end(task_id, end - time.time())
        return task_id

    def _hook_snapshot(self, task_id: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            job = self._state.jobs.get(task_id)
            if job is None or job.notify_hook is None:
                return None
            poll = max(1, job.polls - job.script.not_found_polls)
            return job.notify_hook, status_view(job, poll)

    def _record(self, request: Request, body: Any, task_id: str | None) -> int:
        # Recorded on arrival, so a call the client gave up on (slow answer) is seen at once.
        headers = request.headers
        entry = Recorded(
            request.method, request.url.path, headers.get("authorization"), body, task_id
        )
        with self._lock:
            self._state.requests.append(entry)
            return len(self._state.requests) - 1

    def _answered(self, index: int, status: int, task_id: str | None) -> None:
        with self._lock:
            entry = self._state.requests[index]
            self._state.requests[index] = replace(entry, answered=status, task_id=task_id)


def _prompt(body: Any) -> str | None:
    return body.get("prompt") if isinstance(body, dict) else None


async def _json_or_none(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": f"{message} ({RAW_BODY_MARKER})", "type": kind}}
    return JSONResponse(body, status_code=status, headers=headers)
