"""One-shot commands import only what they use: no dashboard, HTTP server, worker or crypto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import Cli
from tui.completion import IDS_COMMAND

# Top-level packages (or our modules) that no one-shot command on the embedded default may load.
HEAVY = (
    "textual",
    "uvicorn",
    "starlette",
    "prometheus_client",
    "core.worker",
    "core.http",
    "core.supervisor",
    "jwt",
    "cryptography",
    "httpx",
    "pydantic",
    "pydantic_core",
)

# Runs the CLI in this interpreter and prints every module loaded by the time it returns.
WRAPPER = (
    "import sys\n"
    "from tui.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _loaded(cli: Cli, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"videoq {' '.join(args)} failed: {done.stderr}"
    return set(done.stderr.split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.on(tmp_path / "videoq.db")


def test_the_wrapper_sees_what_a_command_loads(cli: Cli) -> None:
    # Guards the test itself: a wrapper that saw nothing would pass every check below.
    assert {"tui.cli", "core.runtime", "core.store.sqlite"} <= _loaded(cli, "list")


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--json"),
        ("submit", "--prompt", "a red kite"),
        ("show", "{id}"),
        ("cancel", "{id}"),
        ("retry", "{id}"),
        ("prune", "--older-than", "0s", "--yes"),
        ("dead",),
        ("dead", "--json"),
        (IDS_COMMAND,),
    ],
    ids=lambda args: args[0],
)
def test_one_shot_commands_load_no_worker_server_or_dashboard(
    cli: Cli, args: tuple[str, ...]
) -> None:
    task_id = cli.ok("submit", "--prompt", "a kite over the sea").strip()
    if args[0] == "retry":
        cli.ok("cancel", task_id)
    argv = [arg.format(id=task_id) for arg in args]
    assert _heavy(_loaded(cli, *argv)) == []


def test_the_worker_command_still_loads_the_worker(cli: Cli) -> None:
    # The lazy imports must not lose the worker where it is needed.
    modules = _loaded(cli, "--no-ui", "--until-idle")
    assert "core.worker" in modules
