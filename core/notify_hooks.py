"""Upstream notify hooks: the per-task callback URL sent with a submit, and its token.

The token is `{attempt}.{mac}`, the mac an HMAC-SHA256 of the task id and attempt under a key
derived from the server secret (VIDEOQ_SECRET_KEY), so a hook names the attempt it was made for
and is checked before anything is read. Earlier secrets (VIDEOQ_SECRET_KEY_PREVIOUS) still
verify, so a secret rotation does not orphan the hooks of jobs already running.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from core.config import HOOK_PATH
from core.server_secret import derive_key

if TYPE_CHECKING:
    from core.config import Settings

_PURPOSE = b"videoq-notify-hook"
_MAX_TOKEN_CHARS = 80


@dataclass(frozen=True)
class NotifyHooks:
    """Builds and checks the notify-hook URLs of one server."""

    public_url: str
    secret: str
    previous: Sequence[str] = ()
    _keys: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        secrets = [self.secret, *self.previous]
        keys = tuple(derive_key(secret, _PURPOSE, index) for index, secret in enumerate(secrets))
        object.__setattr__(self, "_keys", keys)

    def url(self, task_id: str, attempt: int) -> str:
        """The URL the upstream calls for this attempt of this task."""
        path = f"{HOOK_PATH}/{quote(task_id, safe='')}"
        return f"{self.public_url}{path}?token={self.token(task_id, attempt)}"

    def token(self, task_id: str, attempt: int) -> str:
        """The token of one attempt of one task, made with the current secret."""
        return f"{attempt}.{_mac(self._keys[0], task_id, attempt).decode()}"

    def attempt_of(self, task_id: str, token: str | None) -> int | None:
        """The attempt a valid token was made for, or None when it is not valid for `task_id`."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return None
        attempt_text, _, mac = token.partition(".")
        if not attempt_text.isdigit() or not mac:
            return None
        attempt = int(attempt_text)
        # Every key is tried, so the time taken says nothing about which one matched.
        given = mac.encode()
        matches = [hmac.compare_digest(_mac(key, task_id, attempt), given) for key in self._keys]
        return attempt if any(matches) else None


def _mac(key: bytes, task_id: str, attempt: int) -> bytes:
    digest = hmac.new(key, f"{task_id}\x00{attempt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def notify_hooks_for(settings: Settings) -> NotifyHooks | None:
    """The hooks the settings configure, or None when they are off (see `hooks_enabled`)."""
    if not settings.hooks_enabled or settings.secret_key is None:
        return None
    return NotifyHooks(
        settings.public_url, settings.secret_key.get_secret_value(), settings.previous_secret_keys
    )
