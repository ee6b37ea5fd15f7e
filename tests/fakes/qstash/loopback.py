"""`bind_loopback` for its importers outside the fakes; it lives in tests.fakes.loopback."""

from tests.fakes.loopback import bind_loopback

__all__ = ["bind_loopback"]
