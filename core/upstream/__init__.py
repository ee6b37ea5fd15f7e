"""The Upstream port: the video-generation API, and the registry of providers videoq speaks to.

A provider is a contract (which requests it accepts, how long jobs take, how its statuses read);
an adapter is something that speaks it (the real client, or the local simulator). A second
provider is one new module and one line in `_provider_modules`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from msgspec import Struct

from core.errors import InvalidRequest
from core.models import VideoRequest

DEFAULT_PROVIDER = "t8star"
"""The provider a request goes to when it names none."""


def _provider_modules() -> dict[str, str]:
    # Looked up lazily: the providers' modules import this port.
    return {"t8star": "core.upstream.t8star_rules"}


class UpstreamState(StrEnum):
    PENDING = "pending"  # accepted, not started yet
    RUNNING = "running"  # started, and any status we do not know
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class UpstreamStatus(Struct, frozen=True):
    """One answer of the status endpoint, normalised."""

    state: UpstreamState
    raw_status: str
    progress: int | None = None
    video_url: str | None = None
    fail_reason: str | None = None
    http_status: int = 200


class Estimate(Struct, frozen=True):
    """How long the upstream is expected to take for a request, in seconds of real time.

    `high` is the end of the published range: a job still running past it is overdue.
    """

    low: float
    typical: float
    high: float


class Provider(Protocol):
    """One provider's contract: what it accepts, how long it takes, what its words are."""

    name: str
    # Key of the queue's flow control, so parallel calls to this provider stay under its limits.
    flow_control_key: str
    # The upstream status recorded when a submit was accepted and nothing was polled yet.
    submitted_status: str
    # Field values of a request that leaves them out.
    defaults: Mapping[str, Any]
    # The values each enumerated request field accepts (menus and shell completion offer them).
    choices: Mapping[str, Sequence[Any]]

    def check(self, request: VideoRequest) -> None:
        """Raise `core.models.InvalidRequestRule` naming the field this provider refuses."""
        ...

    def expected_timing(self, request: VideoRequest) -> Estimate:
        """What the provider's published timings lead us to expect for `request`."""
        ...

    def sample_requests(self) -> Sequence[Mapping[str, Any]]:
        """Varied valid request fields (without the prompt), for `--demo`."""
        ...


@functools.cache
def provider_for(name: str) -> Provider:
    """The provider called `name`, or InvalidRequest naming the known ones."""
    module = _provider_modules().get(name)
    if module is None:
        known = " or ".join(repr(known) for known in sorted(_provider_modules()))
        raise InvalidRequest(f"provider: must be {known}", field="provider")
    provider: Provider = importlib.import_module(module).PROVIDER
    return provider


def expected_timing(request: VideoRequest) -> Estimate:
    """What the request's provider expects it to take."""
    return provider_for(request.provider).expected_timing(request)


class Upstream(Protocol):
    """Submits video requests and reports their status, speaking one provider's contract.

    Errors are raised as `core.errors.UpstreamError` with `transient` set.
    """

    name: str
    # The provider whose contract this adapter speaks (the simulator speaks a real one's).
    provider: str
    # How many times faster than real time this upstream's clock runs (the simulator's);
    # the worker divides its poll timings and deadlines by it.
    speedup: float
    # Whether a submit's `notify_hook` reaches a service that will call it back.
    accepts_notify_hook: bool

    def describe(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(
        self, request: VideoRequest, api_key: str | None = None, notify_hook: str | None = None
    ) -> str:
        """Start a generation and return the upstream task id; it calls `notify_hook` on changes."""
        ...

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus: ...
