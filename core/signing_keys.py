"""The keys deliveries are verified with: a plain record, apart from `core.signing`, so that
wiring a process (every command) does not import PyJWT and cryptography."""

from __future__ import annotations

from msgspec import Struct

DEFAULT_LEEWAY = 5.0


class SigningKeys(Struct, frozen=True):
    """The keys deliveries are verified with, and the URL they must be addressed to."""

    current: str
    next: str | None
    subject: str | None
    leeway: float = DEFAULT_LEEWAY
