"""The T8Star adapter: the Sora 2 "unified format" video API over one shared HTTP client."""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from core import outbound
from core.errors import UpstreamError
from core.models import VideoRequest
from core.text import one_line
from core.upstream import UpstreamState, UpstreamStatus
from core.upstream.t8star_rules import FAILURE, PENDING_STATUSES, SUCCESS

log = logging.getLogger(__name__)

GENERATIONS_PATH = "/v2/videos/generations"
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_-]{7,127}$")
MAX_REASON_CHARS = 300
MAX_STATUS_CHARS = 64
MAX_RETRY_AFTER = 3600.0

_PERMANENT_WORDS = {400: "request", 401: "API key", 403: "access"}
_MALFORMED = "upstream sent a malformed answer"


class T8StarUpstream:
    """Submits to and polls T8Star; every failure becomes a classified `UpstreamError`."""

    name = "t8star"
    provider = "t8star"
    speedup = 1.0
    accepts_notify_hook = True

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: httpx.Timeout | None = None,
        max_connections: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None

    def describe(self) -> str:
        return f"t8star: {self.base_url}"

    async def open(self) -> None:
        """Create the one shared client (idempotent)."""
        if self._client is None:
            self._client = outbound.client(
                base_url=self.base_url,
                timeout=self._timeout,
                limits=self._limits,
                headers={"Accept": "application/json", "User-Agent": "videoq"},
            )

    async def close(self) -> None:
        """Close the shared client and its connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> T8StarUpstream:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def submit(
        self, request: VideoRequest, api_key: str | None = None, notify_hook: str | None = None
    ) -> str:
        """Start a generation and return the upstream task id; T8Star calls `notify_hook`."""
        body = request_body(request)
        if notify_hook is not None:
            body["notify_hook"] = notify_hook
        payload = await self._call("POST", GENERATIONS_PATH, "submit", api_key, body)
        if not isinstance(payload, dict) or "task_id" not in payload:
            raise UpstreamError(_MALFORMED, transient=True, http_status=200)
        task_id = payload["task_id"]
        if not isinstance(task_id, str) or not TASK_ID.match(task_id):
            raise UpstreamError(
                "upstream returned an invalid task id", transient=False, http_status=200
            )
        log.info("upstream task %s: submitted to %s", task_id, self.base_url)
        return task_id

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus:
        """Ask for the state of `upstream_task_id`, normalised."""
        if not TASK_ID.match(upstream_task_id):
            # Never put an id we did not validate into a URL path.
            raise UpstreamError("not a valid upstream task id", transient=False)
        path = f"{GENERATIONS_PATH}/{upstream_task_id}"
        payload = await self._call("GET", path, upstream_task_id, api_key)
        answer = parse_status(payload, self._key(api_key))
        log.debug("upstream task %s: %s %s%%", upstream_task_id, answer.raw_status, answer.progress)
        return answer

    def _key(self, api_key: str | None) -> str:
        key = api_key or self._api_key
        if not key:
            raise UpstreamError("no T8Star API key configured", transient=False)
        return key

    async def _call(
        self, method: str, path: str, label: str, api_key: str | None, body: Any = None
    ) -> Any:
        """One request: the decoded JSON of a 2xx answer, or a classified UpstreamError."""
        if self._client is None:
            raise RuntimeError("T8StarUpstream.open() must be called before use")
        headers = {"Authorization": f"Bearer {self._key(api_key)}"}
        is_submit = method == "POST"
        try:
            response = await self._client.request(method, path, json=body, headers=headers)
            response.raise_for_status()
        except httpx.TimeoutException as exc:
            log.warning("upstream task %s: T8Star did not answer in time (%s)", label, _kind(exc))
            raise UpstreamError("T8Star did not answer in time", transient=True) from exc
        except httpx.HTTPStatusError as exc:
            error = error_for_status(exc.response, submit=is_submit)
            log.warning("upstream task %s: %s", label, error.message)
            raise error from exc
        except httpx.HTTPError as exc:
            log.warning("upstream task %s: could not reach T8Star (%s)", label, _kind(exc))
            raise UpstreamError(f"could not reach T8Star ({_kind(exc)})", transient=True) from exc
        try:
            return response.json()
        except ValueError as exc:
            log.warning("upstream task %s: %s", label, _MALFORMED)
            raise UpstreamError(
                _MALFORMED, transient=True, http_status=response.status_code
            ) from exc


def request_body(request: VideoRequest) -> dict[str, Any]:
    """The JSON body of a submit, as the upstream expects it (duration as a string)."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "model": request.model,
        "aspect_ratio": request.aspect_ratio,
        "duration": str(request.duration),
        "hd": request.hd,
    }
    if request.images:
        body["images"] = list(request.images)
    return body


def error_for_status(response: httpx.Response, *, submit: bool) -> UpstreamError:
    """Classify a non-2xx answer without looking at (or repeating) its body."""
    code = response.status_code
    if code == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return UpstreamError(
            "T8Star rate limit reached (429)", transient=True, http_status=code,
            retry_after=retry_after,
        )  # fmt: skip
    if code == 408 or code == 504:
        return UpstreamError(f"T8Star timed out ({code})", transient=True, http_status=code)
    if code >= 500:
        return UpstreamError(f"T8Star server error ({code})", transient=True, http_status=code)
    if code == 404 and not submit:
        # A just-created id may briefly be unknown; the worker decides when it is gone for good.
        return UpstreamError(
            "T8Star does not know this task (404)", transient=True, http_status=404
        )
    if code in _PERMANENT_WORDS:
        what = _PERMANENT_WORDS[code]
        return UpstreamError(
            f"T8Star rejected the {what} ({code})", transient=False, http_status=code
        )
    if 400 <= code < 500:
        return UpstreamError(f"T8Star refused the call ({code})", transient=False, http_status=code)
    return UpstreamError(f"T8Star upstream error ({code})", transient=True, http_status=code)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def parse_status(payload: Any, api_key: str = "") -> UpstreamStatus:
    """Turn a status body into an UpstreamStatus, or raise a classified UpstreamError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
        raise UpstreamError(_MALFORMED, transient=True, http_status=200)
    # Stored and shown as it came: no control character (a NUL is more than Postgres can hold).
    raw = one_line(payload["status"], MAX_STATUS_CHARS)
    progress = parse_progress(payload.get("progress"))
    code = raw.upper()
    if code == SUCCESS:
        url = video_url_of(payload.get("data"))
        if url is None:
            raise UpstreamError(
                "upstream reported success without a video URL", transient=False, http_status=200
            )
        return UpstreamStatus(
            UpstreamState.SUCCEEDED, raw, 100 if progress is None else progress, url
        )
    if code == FAILURE:
        reason = short_reason(payload.get("fail_reason"), api_key)
        return UpstreamStatus(UpstreamState.FAILED, raw, progress, fail_reason=reason)
    state = UpstreamState.PENDING if code in PENDING_STATUSES else UpstreamState.RUNNING
    return UpstreamStatus(state, raw, progress)


def parse_progress(value: Any) -> int | None:
    """Progress from "37%" or a bare number, clamped to 0..100; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return min(max(int(number), 0), 100)


def video_url_of(data: Any) -> str | None:
    """The video URL from `data.output`, else `data.video_url`."""
    if not isinstance(data, dict):
        return None
    for field in ("output", "video_url"):
        url = data.get(field)
        if not isinstance(url, str):
            continue
        url = url.strip()
        # A URL with a control character in it (a NUL) is not one to store or hand out.
        if url.lower().startswith(("https://", "http://")) and url.isprintable():
            return url
    return None


def short_reason(reason: Any, api_key: str = "") -> str:
    """The upstream's failure reason on one line, at most MAX_REASON_CHARS, never the key."""
    text = reason if isinstance(reason, str) else ""
    if api_key:
        text = text.replace(api_key, "***")
    return one_line(text, MAX_REASON_CHARS) or "upstream reported failure without a reason"


def _kind(exc: Exception) -> str:
    # The class name says what went wrong; the message may carry the URL and is not needed.
    return type(exc).__name__
