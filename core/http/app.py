"""The ASGI app: signed worker endpoint, task API, health and metrics, on one runtime."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.config import RECONCILE_PATH, WORKER_PATH
from core.http.api import BYOK_HEADER, TaskApi
from core.http.auth import UserAuth
from core.http.deliveries import WorkerEndpoint
from core.http.envelope import BodyLimits, fail
from core.http.hooks import HookEndpoint
from core.http.observe import Observer
from core.http.reconcile import ReconcileEndpoint
from core.runtime import Runtime


def create_app(
    runtime: Runtime, *, limits: BodyLimits | None = None, auth: UserAuth | None = None
) -> Starlette:
    """The app for an open `runtime` (the caller opens, runs and closes the runtime)."""
    limits = limits or BodyLimits()
    auth = auth or UserAuth.from_settings(runtime.settings)
    observer = Observer(runtime)
    routes = [
        Route(
            WORKER_PATH,
            WorkerEndpoint(runtime.worker, limits.worker, runtime.usage).handle,
            methods=["POST"],
        ),
        Route(RECONCILE_PATH, ReconcileEndpoint(runtime, limits.worker).handle, methods=["POST"]),
        *TaskApi(runtime, auth, limits).routes(),
        Route("/healthz", observer.healthz, methods=["GET"]),
        Route("/metrics", observer.metrics, methods=["GET"]),
    ]
    if runtime.hooks is not None:
        routes.append(HookEndpoint(runtime, runtime.hooks).route())
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=_cors(runtime.settings.cors_origins),
    )
    # A redirect to the trailing-slash-less path would be built from the Host header, which the
    # client chooses: unknown paths answer the 404 envelope instead.
    app.router.redirect_slashes = False
    app.state.runtime = runtime
    app.state.auth = auth
    return app


def _cors(origins: str) -> list[Middleware]:
    """Let the listed browser origins call the task API (QStash sends no Origin: unaffected)."""
    allowed = [origin.strip().rstrip("/") for origin in origins.split(",") if origin.strip()]
    if not allowed:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=allowed,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", BYOK_HEADER],
            max_age=600,
        )
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer in the envelope too, never as an HTML page.
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        response: JSONResponse = fail(
            "method_not_allowed", f"{request.method} is not allowed on {request.url.path}", 405
        )
        response.headers.update(exc.headers or {})
        return response
    if exc.status_code == 404:
        return fail("not_found", f"no such endpoint: {request.url.path}", 404)
    return fail("invalid_request", exc.detail, exc.status_code)
