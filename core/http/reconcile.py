"""The reconcile endpoint: a QStash schedule's signed call runs one bounded reconciler pass.

On a serverless host nothing runs between requests, so the reconciler runs here instead of in a
loop: QStash calls this endpoint on a schedule (`videoq schedule`), signed like a delivery.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response

from core import signing
from core.errors import SignatureError, VideoqError
from core.http.envelope import ApiError, Unavailable, error_response, fail, ok, read_body
from core.runtime import Runtime

log = logging.getLogger(__name__)

PASS_BUDGET = 6.0
"""Seconds after which a pass starts no more re-publishes; the rest waits for the next call."""
PASS_LIMIT = 9.0
"""Seconds a call may take in all, under the 10 s a serverless request is given."""


class ReconcileEndpoint:
    """POST handler for scheduled calls: verify the signature, run one pass, report it."""

    def __init__(self, runtime: Runtime, body_limit: int) -> None:
        self.runtime = runtime
        self.body_limit = body_limit

    async def handle(self, request: Request) -> Response:
        """Answer one scheduled call with the pass's counts."""
        try:
            body = await read_body(request, self.body_limit)
        except ApiError as exc:
            return error_response(exc)
        if not self._signed(request, body):
            return fail("unauthorized", "a reconcile call must carry a valid QStash signature", 401)
        try:
            async with asyncio.timeout(PASS_LIMIT):
                report = await self.runtime.reconciler.run_pass(budget=PASS_BUDGET)
        except TimeoutError:
            log.warning("reconcile pass took over %.0fs and was abandoned", PASS_LIMIT)
            return error_response(Unavailable("the reconcile pass ran out of time; call again"))
        except VideoqError as exc:
            return error_response(exc)
        if report.republished or not report.complete:
            log.info("reconcile pass: %s", report.as_dict())
        return ok(report.as_dict())

    def _signed(self, request: Request, body: bytes) -> bool:
        keys = self.runtime.keys
        try:
            signing.verify(
                request.headers.get("upstash-signature"),
                body,
                current_key=keys.current,
                next_key=keys.next,
                subject=self.runtime.settings.reconcile_url,
                leeway=keys.leeway,
            )
        except SignatureError as exc:
            log.warning("refused a reconcile call: %s", exc.message)
            return False
        return True
