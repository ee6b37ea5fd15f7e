"""The command line's tools around the task commands: `--version`, `doctor`, `completion`,
`schedule` (cli_schedule.py), the hidden `_ids` helper that completion calls, and an example line
in every command's help."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.config import Settings
from tui import cli_schedule, completion
from tui.i18n import t

EXAMPLES: dict[str, str] = {
    "": "videoq --no-ui --until-idle",
    "submit": 'videoq submit --prompt "a red fox in the snow" --model sora-2-pro --duration 25',
    "list": "videoq list --status failed --limit 20",
    "show": "videoq show 3f2a9c1e",
    "cancel": "videoq cancel 3f2a9c1e",
    "retry": "videoq retry 3f2a9c1e",
    "prune": "videoq prune --older-than 30d --status succeeded,cancelled",
    "dead": "videoq dead retry msg_3f2a9c1e",
    "serve": "videoq serve --host 0.0.0.0 --port 8000",
    "stats": "videoq stats --since 7d",
    "schema": "videoq schema > videoq.sql",
    "doctor": "videoq doctor --json",
    "completion": "videoq completion bash > ~/.local/share/bash-completion/completions/videoq",
    "schedule": "videoq schedule --every 5m",
}


def package_version() -> str:
    """The installed videoq's version, from the package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videoq")
    except PackageNotFoundError:
        return t("unknown (not installed as a package)")


class _VersionAction(argparse._VersionAction):
    """`--version`, reading the package metadata only when asked (not at every start)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        self.version = f"%(prog)s {package_version()}"
        super().__call__(parser, *args, **kwargs)


def extend(parser: argparse.ArgumentParser, commands: argparse._SubParsersAction) -> None:
    """Add `--version`, `doctor`, `completion`, `schedule`, `_ids`, and an example to each help."""
    parser.add_argument("--version", action=_VersionAction, help=t("print the version and exit"))
    doctor = commands.add_parser(
        "doctor", help=t("check the configuration and the services it names; exit 1 on a problem")
    )
    doctor.add_argument("--json", action="store_true", help=t("print a JSON list of the checks"))
    shells = commands.add_parser("completion", help=t("print a shell completion script"))
    shells.add_argument("shell", choices=completion.SHELLS, help=t("bash, zsh or fish"))
    shells.set_defaults(root_parser=parser)  # the script is generated from the whole parser
    cli_schedule.add_parser(commands)
    commands.add_parser(completion.IDS_COMMAND)  # no help: hidden from --help and completion
    for name, sub in [("", parser), *commands.choices.items()]:
        if name in EXAMPLES:
            sub.epilog = t("example: {command}", command=EXAMPLES[name])


def run_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from tui.doctor import doctor

    return doctor(settings, as_json=args.json)


def run_completion(settings: Settings, args: argparse.Namespace) -> int:
    print(completion.script(args.root_parser, args.shell))
    return 0


def run_ids(settings: Settings, args: argparse.Namespace) -> int:
    return completion.print_recent_ids(settings)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "doctor": run_doctor,
    "completion": run_completion,
    "schedule": cli_schedule.run,
    completion.IDS_COMMAND: run_ids,
}
