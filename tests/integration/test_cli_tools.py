"""`videoq --version`, the example line in every command's help, and shell completion."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.cli import VIDEOQ, Cli
from tests.fakes.supabase import FakeSupabase
from tui.cli import build_parser


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.on(tmp_path / "videoq.db")


def test_version_prints_the_package_metadata_version(cli: Cli) -> None:
    assert cli.ok("--version").strip() == f"videoq {version('videoq')}"


def _public_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    public = {action.dest for action in commands._get_subactions()}
    return {name: sub for name, sub in commands.choices.items() if name in public}


def test_every_command_help_shows_an_example_of_that_command() -> None:
    parser = build_parser()
    commands = _public_commands(parser)
    assert {"submit", "list", "show", "doctor", "completion"} <= set(commands)
    assert "example: videoq " in parser.format_help()
    for name, sub in commands.items():
        assert f"example: videoq {name}" in sub.format_help(), name


def test_help_of_a_command_prints_its_example(cli: Cli) -> None:
    assert "example: videoq list --status failed" in cli.ok("list", "--help")


def _script(cli: Cli, shell: str) -> str:
    text = cli.ok("completion", shell)
    assert "show" in text and "--status" in text
    return text


def test_the_bash_script_parses(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "videoq.bash"
    path.write_text(_script(cli, "bash"))
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("shell", "check"), [("zsh", "-n"), ("fish", "--no-execute")])
def test_the_zsh_and_fish_scripts_parse(cli: Cli, tmp_path: Path, shell: str, check: str) -> None:
    text = _script(cli, shell)
    for words in ("videoq _ids", "queued running succeeded failed cancelled", "sora-2 sora-2-pro"):
        assert words in text, words
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed on this machine")
    path = tmp_path / f"videoq.{shell}"
    path.write_text(text)
    done = subprocess.run([shell, check, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_bad_shell_is_refused_by_name(cli: Cli) -> None:
    done = cli.run("completion", "tcsh")
    assert done.returncode != 0 and "invalid choice: 'tcsh'" in done.stderr


def test_a_mistyped_command_is_offered_the_commands_but_not_the_internal_one(cli: Cli) -> None:
    done = cli.run("frobnicate")

    assert done.returncode == 2
    assert "invalid choice: 'frobnicate' (choose from 'submit', 'list'," in done.stderr
    assert "'schedule')" in done.stderr
    assert "_ids" not in done.stderr  # shell completion's, not a user's


def _complete(cli: Cli, script: Path, *words: str) -> list[str]:
    """What bash offers for `videoq <words>` (the last word is the one being typed)."""
    line = " ".join(f"'{word}'" for word in ("videoq", *words))
    program = (
        f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words)}\n"
        'COMP_LINE="${COMP_WORDS[*]}"\nCOMP_POINT=${#COMP_LINE}\n'
        '_shtab_videoq\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = cli.env | {"PATH": f"{Path(VIDEOQ).parent}:{cli.env.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", program], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.split("\n") if word]


def test_bash_completes_commands_flags_statuses_models_and_newest_ids_first(
    cli: Cli, tmp_path: Path
) -> None:
    script = tmp_path / "videoq.bash"
    script.write_text(_script(cli, "bash"))
    assert "doctor" in _complete(cli, script, "do")
    assert "_ids" not in _complete(cli, script, "_")
    assert _complete(cli, script, "list", "--st") == ["--status"]
    assert set(_complete(cli, script, "list", "--status", "")) == {
        "queued", "running", "succeeded", "failed", "cancelled"
    }  # fmt: skip
    assert _complete(cli, script, "list", "--status", "fa") == ["failed"]
    assert set(_complete(cli, script, "prune", "--status", "")) == {
        "succeeded", "failed", "cancelled"
    }  # fmt: skip
    assert "--older-than" in _complete(cli, script, "prune", "--")
    assert set(_complete(cli, script, "submit", "--model", "")) == {"sora-2", "sora-2-pro"}
    assert _complete(cli, script, "show", "") == []  # no database yet, and none is created
    assert not cli.db_path.exists()
    ids = [cli.ok("submit", "--prompt", f"scene {n}").strip() for n in range(3)]
    assert _complete(cli, script, "show", "") == [task_id[:8] for task_id in reversed(ids)]
    assert _complete(cli, script, "cancel", ids[1][:3]) == [ids[1][:8]]


def test_ids_helper_prints_short_ids_newest_first(cli: Cli) -> None:
    ids = [cli.ok("submit", "--prompt", f"scene {n}").strip() for n in range(2)]
    assert cli.ok("_ids").split() == [ids[1][:8], ids[0][:8]]


def test_ids_helper_reads_supabase_too(tmp_path: Path, empty_supabase: FakeSupabase) -> None:
    fake_supabase = empty_supabase
    cli = Cli.on(
        tmp_path / "queue.db",
        SUPABASE_URL=fake_supabase.url,
        SUPABASE_SERVICE_ROLE_KEY=fake_supabase.service_role_key,
    )
    ids = [cli.ok("submit", "--prompt", f"scene {n}").strip() for n in range(2)]
    assert cli.ok("_ids").split() == [ids[1][:8], ids[0][:8]]
