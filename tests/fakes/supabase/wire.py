"""The two Phoenix serializers Realtime registers, chosen per socket by the `vsn` URL parameter.

The real server lists `{V1.JSONSerializer, "~> 1.0.0"}` and `{V2.JSONSerializer, "~> 2.0.0"}`
(supabase/realtime `lib/realtime_web/endpoint.ex`); Phoenix defaults `vsn` to 1.0.0 and refuses
the upgrade (403) for a version neither matches. realtime-py speaks 1.0.0, realtime-js 2.0.0.

Inside the fake a frame is a dict with `topic`, `event`, `payload`, `ref` and `join_ref`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

Frame = dict[str, Any]


class MalformedFrame(ValueError):
    """A client frame the serializer cannot decode (Phoenix crashes the socket on it)."""


class Serializer(Protocol):
    """Turns text frames into frame dicts and back."""

    def decode(self, text: str) -> Frame: ...

    def encode(self, frame: Frame) -> str: ...


class V1Json:
    """vsn 1.0.0: one JSON object per frame; the server never sends `join_ref`."""

    def decode(self, text: str) -> Frame:
        message = _json(text)
        if not isinstance(message, dict):
            raise MalformedFrame(f"expected a JSON object, got {type(message).__name__}")
        return {
            "topic": message.get("topic", ""),
            "event": message.get("event"),
            "payload": message.get("payload") or {},
            "ref": message.get("ref"),
            "join_ref": message.get("join_ref"),
        }

    def encode(self, frame: Frame) -> str:
        keys = ("topic", "event", "payload", "ref")  # Phoenix V1: Map.take, no join_ref
        return json.dumps({key: frame.get(key) for key in keys})


class V2Json:
    """vsn 2.0.0: `[join_ref, ref, topic, event, payload]` per frame."""

    def decode(self, text: str) -> Frame:
        message = _json(text)
        if not isinstance(message, list) or len(message) < 5:
            raise MalformedFrame("expected a V2 array [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = message[:5]
        return {
            "topic": topic or "",
            "event": event,
            "payload": payload or {},
            "ref": ref,
            "join_ref": join_ref,
        }

    def encode(self, frame: Frame) -> str:
        fields = ("join_ref", "ref", "topic", "event", "payload")
        return json.dumps([frame.get(key) for key in fields])


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None


def serializer_for(vsn: str | None) -> Serializer | None:
    """The serializer whose `~> X.0.0` requirement `vsn` meets (1.0.0 if absent), else None."""
    parts = (vsn or "1.0.0").split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) == (1, 0):
        return V1Json()
    if (major, minor) == (2, 0):
        return V2Json()
    return None
