"""Parsing a publish request: the raw destination, Upstash-* settings, dedup key."""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

from tests.fakes.qstash.engine import Message
from tests.fakes.qstash.wire import RetryDelay, parse_delay, parse_flow_value

_BAD_SCHEME = "invalid destination url: endpoint has invalid scheme, add http:// or https://"
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


class BadPublish(Exception):
    """The publish request is invalid; the text is QStash's 400 error message."""


def destination_of(request: Request, prefix: str = "/v2/publish/") -> str:
    """The destination URL a publish (or schedule) names after `prefix`, exactly as sent."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    destination = raw_path[len(prefix.encode()) :].decode("utf-8", "replace")
    query = request.scope.get("query_string", b"").decode("latin-1")
    own = [p for p in query.split("&") if p and not _is_qstash_param(p.split("=", 1)[0])]
    if own:
        destination += "?" + "&".join(own)
    if not destination.startswith(("http://", "https://")):
        raise BadPublish(_BAD_SCHEME)
    if not urlsplit(destination).netloc:
        raise BadPublish("invalid destination url: missing host")
    return destination


def _is_qstash_param(name: str) -> bool:
    name = name.lower()
    return name == "qstash_token" or name.startswith("upstash-")


def upstash_settings(request: Request) -> dict[str, str]:
    """Upstash-* settings from the lower-case query parameters, overridden by the headers."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    found = {k.lower(): v for k, v in parse_qsl(query) if k.lower().startswith("upstash-")}
    found.update({k.lower(): v for k, v in request.headers.items() if k.startswith("upstash-")})
    return found


def parse_publish(request: Request, body: bytes) -> tuple[Message, str | None]:
    """The message a publish request describes, and its deduplication key (if any)."""
    destination = destination_of(request)
    cfg = upstash_settings(request)
    forward = {
        name[len("upstash-forward-") :].title(): value
        for name, value in cfg.items()
        if name.startswith("upstash-forward-")
    }
    content_type = request.headers.get("content-type")
    created_ms = int(time.time() * 1000)
    try:
        message = Message(
            message_id="msg_" + secrets.token_hex(20),
            url=destination,
            method=cfg.get("upstash-method", "POST").upper(),
            body=body,
            content_type=content_type,
            forward=forward,
            max_retries=_retries(cfg),
            not_before_ms=_not_before_ms(cfg, created_ms),
            created_ms=created_ms,
            caller_ip=request.client.host if request.client else "127.0.0.1",
            retry_delay=RetryDelay(cfg["upstash-retry-delay"])
            if "upstash-retry-delay" in cfg
            else None,
            timeout=_timeout(cfg),
            flow_key=cfg.get("upstash-flow-control-key"),
            flow=parse_flow_value(cfg.get("upstash-flow-control-value", "")),
        )
    except ValueError as exc:
        raise BadPublish(str(exc)) from exc
    if message.method not in _METHODS:
        raise BadPublish(f"invalid method {message.method!r}")
    return message, _dedup_key(cfg, message)


def _timeout(cfg: dict[str, str]) -> float | None:
    value = cfg.get("upstash-timeout")
    return None if value is None else float(parse_delay(value))


def _retries(cfg: dict[str, str]) -> int:
    retries = int(cfg.get("upstash-retries", "3"))
    if retries < 0:
        raise ValueError("Upstash-Retries must not be negative")
    return retries


def _not_before_ms(cfg: dict[str, str], created_ms: int) -> int:
    # Upstash-Not-Before overrides Upstash-Delay.
    if "upstash-not-before" in cfg:
        return int(cfg["upstash-not-before"]) * 1000
    if "upstash-delay" in cfg:
        return created_ms + parse_delay(cfg["upstash-delay"]) * 1000
    return created_ms


def _dedup_key(cfg: dict[str, str], message: Message) -> str | None:
    explicit = cfg.get("upstash-deduplication-id")
    if explicit is not None:
        if ":" in explicit:
            raise BadPublish("DeduplicationId cannot contain ':'")
        return "id:" + explicit
    if cfg.get("upstash-content-based-deduplication", "").lower() != "true":
        return None
    digest = hashlib.sha256(message.url.encode() + b"\0" + message.body)
    digest.update((message.content_type or "").encode())
    for name, value in sorted(message.forward.items()):
        digest.update(f"\0{name}:{value}".encode())
    return "content:" + digest.hexdigest()
