"""What a URL in the settings says about where a service is."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_private_url(url: str) -> bool:
    """Whether `url` points at this machine or a private network (which QStash cannot reach)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback


def is_local_qstash(qstash_url: str | None) -> bool:
    """Whether QSTASH_URL names a local QStash dev server rather than the real service."""
    return qstash_url is not None and is_private_url(qstash_url)
