"""Encryption at rest for users' own upstream keys (BYOK), with Fernet from `cryptography`."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigError, VideoqError


class KeyBox:
    """Encrypts and decrypts upstream API keys with a key derived from the server secret."""

    def __init__(self, server_secret: str) -> None:
        if len(server_secret) < 32:
            raise ConfigError("VIDEOQ_SECRET_KEY must be at least 32 characters long")
        # Fernet wants 32 url-safe base64 bytes; derive them so any long secret works.
        digest = hashlib.sha256(b"videoq-byok\x00" + server_secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise VideoqError(
                "the stored upstream key cannot be decrypted with this server secret"
            ) from exc
