"""docs/settings.md documents every setting, and the README shows the two commands."""

from __future__ import annotations

from pathlib import Path

from core.config import ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    for name, env in ENV_NAMES.items():
        assert f"| `{env}` |" in SETTINGS_DOC, (
            f"{env} ({name}) is not documented in docs/settings.md"
        )


def test_the_readme_shows_the_main_and_the_test_command() -> None:
    assert "uv run videoq" in README and "uv run pytest" in README
