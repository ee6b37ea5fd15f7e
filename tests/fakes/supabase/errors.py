"""PostgREST's error body and its SQLSTATE -> HTTP status map."""

from __future__ import annotations

from typing import Any

import psycopg
from starlette.responses import JSONResponse, Response


class PgrstError(Exception):
    """An error answered with PostgREST's body `{code, details, hint, message}`."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint, self.headers = details, hint, headers or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"message": self.message, "hint": self.hint}
        if self.code is not None:  # the gateway's own errors carry no code
            body = {"code": self.code, "details": self.details, **body}
        return JSONResponse(body, self.status, headers=self.headers)


_EXACT_STATUS = {
    "23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400,
    "42883": 404, "42P01": 404, "42P17": 500,
}  # fmt: skip
_PREFIX_STATUS = {
    "08": 503, "09": 500, "0L": 403, "0P": 403, "28": 403, "25": 500, "2D": 500, "38": 500,
    "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
    "F0": 500, "HV": 500, "XX": 500, "P0": 500,
}  # fmt: skip


def status_for_sqlstate(state: str, anonymous: bool) -> int:
    """PostgREST's SQLSTATE -> HTTP status map (docs/references/errors.rst)."""
    if state == "42501":
        return 401 if anonymous else 403
    if state.startswith("PT") and state[2:].isdigit():
        return int(state[2:])
    return _EXACT_STATUS.get(state) or _PREFIX_STATUS.get(state[:2], 400)


def pg_error(exc: psycopg.Error, role: str) -> PgrstError:
    diag = exc.diag
    state = exc.sqlstate or "XX000"
    return PgrstError(
        status_for_sqlstate(state, role == "anon"),
        state,
        diag.message_primary or str(exc),
        diag.message_detail,
        diag.message_hint,
    )
