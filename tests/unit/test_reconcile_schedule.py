"""`--every` as a cron expression, and the Vercel example files staying true to the app."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from core.errors import InvalidRequest
from core.http import asgi
from core.reconcile_schedule import SUGGESTED_EVERY, Every

VERCEL = Path(__file__).parents[2] / "deploy" / "vercel"


@pytest.mark.parametrize(
    ("text", "cron", "per_day"),
    [
        ("1m", "* * * * *", 1440),
        ("2m", "*/2 * * * *", 720),
        ("15M", "*/15 * * * *", 96),
        ("30m", "*/30 * * * *", 48),
        ("1h", "0 */1 * * *", 24),
        ("6h", "0 */6 * * *", 4),
        ("1d", "0 0 * * *", 1),
    ],
)
def test_every_becomes_an_even_cron(text: str, cron: str, per_day: int) -> None:
    every = Every.parse(text)
    assert (every.cron, every.calls_per_day) == (cron, per_day)


@pytest.mark.parametrize("text", ["7m", "0m", "60m", "5h", "2d", "90s", "m", "", "1.5m", "-1m"])
def test_every_refuses_what_no_even_cron_expresses(text: str) -> None:
    with pytest.raises(InvalidRequest, match="--every must be minutes that divide an hour"):
        Every.parse(text)


def test_every_suggestion_parses() -> None:
    assert all(Every.parse(text) for text in SUGGESTED_EVERY)


def test_the_vercel_function_exports_the_serverless_app() -> None:
    spec = importlib.util.spec_from_file_location("vercel_index", VERCEL / "api" / "index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.app is asgi.app


def test_vercel_json_routes_every_path_to_the_function_within_10_seconds() -> None:
    config = json.loads((VERCEL / "vercel.json").read_text())
    assert config["rewrites"] == [{"source": "/(.*)", "destination": "/api/index"}]
    assert config["functions"]["api/index.py"]["maxDuration"] <= 10
    assert (VERCEL / "requirements.txt").read_text().count("videoq") >= 1
