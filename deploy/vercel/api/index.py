"""Vercel's Python function: the videoq service as an ASGI app, built from the environment."""

from core.http.asgi import app

__all__ = ["app"]
