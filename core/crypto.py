"""Encryption at rest for users' own upstream keys (BYOK), with Fernet from `cryptography`."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import VideoqError
from core.server_secret import derive_key

if TYPE_CHECKING:
    from core.config import Settings

KEY_UNREADABLE = (
    "the stored upstream key cannot be decrypted with this server's secret (VIDEOQ_SECRET_KEY"
    " changed); retry the task with the key"
)


class KeyUnreadable(VideoqError):
    """A stored upstream key that no configured server secret opens."""

    code = "key_unreadable"


class KeyBox:
    """Encrypts with the current server secret; decrypts with it or any previous one."""

    def __init__(self, server_secret: str, previous: Sequence[str] = ()) -> None:
        secrets = [server_secret, *previous]
        self._fernet = MultiFernet([_fernet(secret, index) for index, secret in enumerate(secrets)])

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise KeyUnreadable(KEY_UNREADABLE) from exc


def _fernet(secret: str, index: int) -> Fernet:
    """The Fernet of one server secret; index 0 is VIDEOQ_SECRET_KEY, the rest are previous."""
    # Fernet wants 32 url-safe base64 bytes; derive them so any long secret works.
    return Fernet(base64.urlsafe_b64encode(derive_key(secret, b"videoq-byok", index)))


def key_box_for(settings: Settings) -> KeyBox | None:
    """The KeyBox the settings configure, or None when VIDEOQ_SECRET_KEY is unset."""
    if settings.secret_key is None:
        return None
    return KeyBox(settings.secret_key.get_secret_value(), settings.previous_secret_keys)
