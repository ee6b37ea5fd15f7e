"""The HTTP service (DESIGN §5): signed worker endpoint, task API, health and metrics."""

from core.http.app import create_app
from core.http.server import Service, run_background, serve

__all__ = ["Service", "create_app", "run_background", "serve"]
