"""Keys derived from the server secret (VIDEOQ_SECRET_KEY), one per purpose, so that a key made
for one use (sealing BYOK keys, signing hook tokens) never works for another."""

from __future__ import annotations

import hashlib

from core.errors import ConfigError

MIN_SECRET_CHARS = 32


def secret_name(index: int) -> str:
    """How the settings name the secret at `index`: 0 is the current one, the rest previous."""
    return "VIDEOQ_SECRET_KEY" if index == 0 else f"VIDEOQ_SECRET_KEY_PREVIOUS entry {index}"


def derive_key(secret: str, purpose: bytes, index: int = 0) -> bytes:
    """32 bytes for `purpose` from the server secret at `index` (ConfigError when too short)."""
    if len(secret) < MIN_SECRET_CHARS:
        name = secret_name(index)
        raise ConfigError(f"{name} must be at least {MIN_SECRET_CHARS} characters long")
    return hashlib.sha256(purpose + b"\x00" + secret.encode()).digest()
