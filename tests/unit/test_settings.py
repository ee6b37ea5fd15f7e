"""Settings come from the environment over `.env`, names in any case, keyword arguments first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from msgspec import ValidationError

from core.config import ENV_NAMES, Settings
from core.messages import problem


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A working directory of its own (for `.env`), and none of the caller's videoq variables.
    monkeypatch.chdir(tmp_path)
    for env in ENV_NAMES.values():
        monkeypatch.delenv(env, raising=False)


def test_the_environment_sets_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOQ_CONCURRENCY", "3")
    assert Settings().concurrency == 3


def test_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("videoq_concurrency", "4")
    monkeypatch.setenv("Videoq_Log_Level", "debug")
    settings = Settings()
    assert (settings.concurrency, settings.log_level) == (4, "DEBUG")


def test_dot_env_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\nVIDEOQ_CONCURRENCY=5\nexport VIDEOQ_SIM_SPEED='7'\nQSTASH_TOKEN\n"
    )
    assert (Settings().concurrency, Settings().sim_speedup) == (5, 7.0)
    assert Settings().qstash_token is None  # a name without a value sets nothing
    monkeypatch.setenv("VIDEOQ_CONCURRENCY", "6")
    assert Settings().concurrency == 6


def test_no_env_file_reads_the_environment_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("VIDEOQ_CONCURRENCY=5\n")
    monkeypatch.setenv("VIDEOQ_SIM_SPEED", "9")
    settings = Settings(_env_file=None)
    assert (settings.concurrency, settings.sim_speedup) == (8, 9.0)


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOQ_DB", "/from/env.db")
    assert Settings(db_path=Path("/given.db")).db_path == Path("/given.db")
    assert Settings(VIDEOQ_DB="/by/alias.db").db_path == Path("/by/alias.db")
    assert Settings().db_path == Path("/from/env.db")


def test_a_bad_value_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOQ_CONCURRENCY", "0")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert problem(caught.value)[0] == "concurrency"


def test_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOQ_NOT_A_SETTING", "x")
    assert "not_a_setting" not in dataclasses.asdict(Settings())


def test_a_misspelt_keyword_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="unknown settings: db_pth, sim_speed"):
        Settings(_env_file=None, db_pth="/tmp/x.db", sim_speed=2)
    # Fields go by their name or their variable.
    assert Settings(_env_file=None, VIDEOQ_SIM_SPEED=2, concurrency=3).sim_speedup == 2
