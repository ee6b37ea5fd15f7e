"""The `videoq` command line.

The headless paths (`--no-ui`, `submit`, `list`, ...) never import Textual: a server needs no
terminal library, and start-up stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from msgspec import ValidationError

from core import event_loop
from core.config import Settings, settings_problem
from core.errors import InvalidRequest, VideoqError
from core.models import ACTIVE, TERMINAL, TaskStatus, VideoRequest, json_dict, utcnow
from core.service import MAX_LIST_LIMIT
from tui import cli_tools, render
from tui.cli_parser import Parser
from tui.i18n import outside_text, t, tn

if TYPE_CHECKING:
    # Start-up: only what parsing and the settings need is imported at the top of this module;
    # the adapters, the worker, the HTTP service and the dashboard load inside the handler that
    # uses them (see the dispatch table, COMMANDS).
    from core.runtime import Runtime

log = logging.getLogger("videoq")

Command = Callable[["Runtime", argparse.Namespace], Awaitable[int]]
FINISHED = [status for status in TaskStatus if status in TERMINAL]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="videoq",
        description=t(
            "A durable queue for AI video-generation jobs. With no command, opens the "
            "dashboard with the worker running in the same process."
        ),
    )
    parser.add_argument(
        "--no-ui", action="store_true", help=t("run the worker headless (logs to stdout)")
    )
    parser.add_argument(
        "--until-idle",
        action="store_true",
        help=t(
            "with --no-ui: stop once no task is queued or running, print a summary line "
            "(succeeded / failed / cancelled) and exit 0, whatever the tasks' outcomes"
        ),
    )
    parser.add_argument(
        "--demo",
        type=_count,
        default=0,
        metavar="N",
        help=t("first submit N varied sample tasks"),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    submit = commands.add_parser("submit", help=t("queue a new video task and print its id"))
    submit.add_argument("--prompt", required=True, help=t("what the video should show"))
    submit.add_argument("--model", default="sora-2", help=t("sora-2 (default) or sora-2-pro"))
    submit.add_argument(
        "--duration",
        default="10",
        help=t("seconds: 10 (default), 15, or 25 (sora-2-pro only)"),
    )
    submit.add_argument("--aspect-ratio", default="16:9", help=t("16:9 (default) or 9:16"))
    submit.add_argument(
        "--hd", action="store_true", help=t("high definition (sora-2-pro only; much slower)")
    )
    submit.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="URL",
        help=t("reference image URL or data URL (repeatable)"),
    )
    submit.add_argument("--json", action="store_true", help=t("print the stored task as JSON"))

    listing = commands.add_parser("list", help=t("list tasks, newest first"))
    listing.add_argument(
        "--status",
        action="append",
        metavar="S",
        help=t("only this status (repeatable): {statuses}", statuses=", ".join(TaskStatus)),
    )
    listing.add_argument(
        "--limit",
        type=_limit,
        default=100,
        help=t("at most this many, 1 to {most} (default 100)", most=MAX_LIST_LIMIT),
    )
    listing.add_argument(
        "--json", action="store_true", help=t("print one JSON array with every column")
    )

    show = commands.add_parser("show", help=t("show one task and its history"))
    show.add_argument("task_id", metavar="ID", help=t("task id (or an unambiguous prefix)"))
    show.add_argument("--json", action="store_true", help=t("print {{task, history}} as JSON"))

    ids_help = t("task ids (or unique prefixes)")
    cancel = commands.add_parser("cancel", help=t("cancel queued or running tasks"))
    cancel.add_argument("task_ids", nargs="+", metavar="ID", help=ids_help)
    retry = commands.add_parser(
        "retry", help=t("retry failed or cancelled tasks, or every failed one with --failed")
    )
    retry.add_argument("task_ids", nargs="*", metavar="ID", help=ids_help)
    retry.add_argument("--failed", action="store_true", help=t("retry every failed task"))
    retry.add_argument(
        "--since",
        type=_duration,
        metavar="AGE",
        help=t("with --failed: failed within AGE (1h, 30m)"),
    )
    retry.add_argument("--model", metavar="M", help=t("with --failed: only tasks of model M"))
    retry.add_argument("--yes", action="store_true", help=t("with --failed: do not ask first"))

    prune = commands.add_parser(
        "prune", help=t("delete finished tasks older than an age, with their history and images")
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help=t("last changed over AGE ago: 30d, 12h"),
    )
    prune.add_argument(
        "--status",
        default=",".join(FINISHED),
        metavar="S,S",
        help=t("only these finished statuses, comma-separated (default: all three)"),
    )
    prune.add_argument("--yes", action="store_true", help=t("do not ask first"))
    dead = commands.add_parser(
        "dead", help=t("list the step messages the queue gave up on, or requeue or drop them")
    )
    dead.add_argument("--json", action="store_true", help=t("print one JSON array"))
    dead_actions = dead.add_subparsers(dest="dead_action", metavar="ACTION")
    for action, text in (
        ("retry", t("deliver the named dead letters again (their retries start afresh)")),
        ("drop", t("delete the named dead letters for good")),
    ):
        sub = dead_actions.add_parser(action, help=text)
        sub.add_argument("dead_ids", nargs="+", metavar="ID", help=t("ids (or unique prefixes)"))

    serve = commands.add_parser(
        "serve", help=t("run the HTTP service (worker endpoint and task API)")
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help=t("interface to bind (default 127.0.0.1)")
    )
    serve.add_argument("--port", type=int, default=8000, help=t("port (default 8000)"))

    stats = commands.add_parser(
        "stats", help=t("failures grouped by reason, and results per model and duration")
    )
    stats.add_argument(
        "--since", type=_duration, default=timedelta(hours=24), metavar="AGE",
        help=t("the window, ending now (default 24h; 30m, 7d)"),
    )  # fmt: skip
    stats.add_argument(
        "--json", action="store_true", help=t("print the figures as one JSON object")
    )

    commands.add_parser("schema", help=t("print the SQL that sets up Supabase/Postgres"))
    cli_tools.extend(parser, commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.until_idle and not args.no_ui:
        parser.error(t("--until-idle works only with --no-ui (the dashboard runs until you quit)"))
    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail(outside_text(settings_problem(exc)))
    if args.command in cli_tools.COMMANDS:
        return _run_guarded(lambda: cli_tools.COMMANDS[args.command](settings, args))
    _configure_logging(settings, quiet=args.command in COMMANDS)
    if args.command == "schema":
        from core.sql import schema_sql

        print(schema_sql())
        return 0
    if args.command == "serve":
        from core.http import serve

        return _run_guarded(lambda: serve(settings, host=args.host, port=args.port))
    if args.command is None and not args.no_ui:
        from tui.app import run_dashboard

        return _run_guarded(lambda: run_dashboard(settings, demo=args.demo))
    command = COMMANDS[args.command] if args.command else cmd_worker
    work = _with_runtime(settings, command, args)
    return _run_guarded(lambda: event_loop.run(work, settings.event_loop))


async def _with_runtime(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    from core.runtime import Runtime

    async with Runtime.from_settings(settings) as runtime:
        return await command(runtime, args)


async def cmd_worker(runtime: Runtime, args: argparse.Namespace) -> int:
    # Only the worker loads the supervisor and the demo: one-shot commands start faster without.
    from core.demo import seed_demo
    from core.supervisor import supervise

    for part, text in runtime.describe().items():
        log.info("%s: %s", part, text)
    await seed_demo(runtime.service, args.demo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopper(stop, sig))
    started = utcnow()
    active = {t.id for t in await runtime.service.list(statuses=ACTIVE, limit=MAX_LIST_LIMIT)}
    await supervise(runtime, stop, until_idle=args.until_idle, log_actions=True, watch_store=True)
    log.info("worker stopped")
    if not args.until_idle:
        return 0
    seen = [
        t
        for t in await runtime.service.list(limit=MAX_LIST_LIMIT)
        if t.id in active or t.created_at >= started
    ]
    counts = Counter(t.status for t in seen)
    print(render.idle_summary(counts), flush=True)
    return 0  # reaching idle is success; the summary line says how the tasks ended


async def cmd_submit(runtime: Runtime, args: argparse.Namespace) -> int:
    request = VideoRequest.parse(
        {
            "prompt": args.prompt,
            "model": args.model,
            "duration": args.duration,
            "aspect_ratio": args.aspect_ratio,
            "hd": args.hd,
            "images": args.image,
        }
    )
    task = await runtime.service.submit(request, actor="cli")
    if args.json:
        _print_json(task.public_dict())
    else:
        print(task.id)
    return 0


async def cmd_list(runtime: Runtime, args: argparse.Namespace) -> int:
    from core.lateness import lateness

    statuses = [_status(value) for value in args.status] if args.status else None
    found = await runtime.service.list(statuses=statuses, limit=args.limit + 1)
    tasks, cut = found[: args.limit], len(found) > args.limit
    now = utcnow()
    late = {task.id: lateness(task, now, runtime.speedup) for task in tasks}
    if args.json:
        unreadable = [
            {"id": row.task_id, "unreadable": True, "why": row.why} for row in found.unreadable
        ]
        _print_json([render.task_json(task, late[task.id]) for task in tasks] + unreadable)
    else:
        width = shutil.get_terminal_size().columns
        if tasks or not found.unreadable:
            print(render.task_table(tasks, width, late))
        for row in found.unreadable:
            print(render.unreadable_line(row, width))
    if cut:
        note = t("showing the newest {limit}; more tasks match (raise --limit)", limit=args.limit)
        print(note, file=sys.stderr if args.json else sys.stdout)
    return 0


async def cmd_show(runtime: Runtime, args: argparse.Namespace) -> int:
    from core.lateness import lateness

    detail = await runtime.service.detail(await runtime.service.resolve_id(args.task_id))
    late = lateness(detail.task, utcnow(), runtime.speedup)
    if args.json:
        history = [json_dict(event) for event in detail.history]
        _print_json({"task": render.task_json(detail.task, late), "history": history})
    else:
        print(render.task_detail(detail.task, detail.history, late))
    return 0


async def cmd_stats(runtime: Runtime, args: argparse.Namespace) -> int:
    from core.insight import collect_stats

    stats = await collect_stats(runtime.store, utcnow() - args.since)
    if args.json:
        _print_json(render.stats_json(stats))
    else:
        print(render.stats_report(stats, shutil.get_terminal_size().columns))
    return 0


async def cmd_cancel(runtime: Runtime, args: argparse.Namespace) -> int:
    async def cancel(task_id: str) -> str:
        task = await runtime.service.cancel(task_id, actor="cli")
        return t("task {id} cancelled", id=task.id)

    return await _each_id(runtime, args.task_ids, cancel)


async def cmd_retry(runtime: Runtime, args: argparse.Namespace) -> int:
    if args.failed:
        return await _retry_failed(runtime, args)
    if args.since is not None or args.model or args.yes:
        raise InvalidRequest(t("--since, --model and --yes go with --failed"))
    if not args.task_ids:
        raise InvalidRequest(
            t("give the ids of the tasks to retry, or --failed for every failed one")
        )
    return await _each_id(runtime, args.task_ids, lambda task_id: _retry_one(runtime, task_id))


async def _retry_one(runtime: Runtime, task_id: str) -> str:
    task = await runtime.service.retry(task_id, actor="cli")
    return t("task {id} queued again (attempt {attempt})", id=task.id, attempt=task.attempt)


async def _each_id(
    runtime: Runtime, prefixes: list[str], act: Callable[[str], Awaitable[str]]
) -> int:
    """Act on each id in turn; report every refusal and exit 1 if there was any."""
    failures = 0
    for prefix in prefixes:
        try:
            print(await act(await runtime.service.resolve_id(prefix)))
        except VideoqError as exc:
            failures += 1
            print(t("videoq: error: {message}", message=outside_text(exc.message)), file=sys.stderr)
    return 1 if failures else 0


async def _retry_failed(runtime: Runtime, args: argparse.Namespace) -> int:
    if args.task_ids:
        raise InvalidRequest(t("give ids or --failed, not both"))
    failed = await runtime.service.list(statuses=[TaskStatus.FAILED], limit=MAX_LIST_LIMIT)
    cutoff = None if args.since is None else utcnow() - args.since
    picked = [
        t
        for t in failed
        if (args.model is None or t.model == args.model)
        and (cutoff is None or (t.completed_at or t.updated_at) >= cutoff)
    ]
    count = len(picked)
    print(tn("{count} failed task to retry (each starts a new upstream job)",
             "{count} failed tasks to retry (each starts a new upstream job)", count))  # fmt: skip
    if not picked:
        return 0
    if not args.yes and not _confirmed(t("Retry them?"), t("retry them")):
        return 1
    for task in picked:
        print(await _retry_one(runtime, task.id))
    return 0


async def cmd_prune(runtime: Runtime, args: argparse.Namespace) -> int:
    before = _cutoff(args.older_than)
    statuses = _finished_statuses(args.status)
    planned = await runtime.service.prune(before, statuses, dry_run=True)
    print(render.prune_counts(planned, statuses, before, done=False))
    if not sum(planned.values()):
        return 0
    if not args.yes and not _confirmed(t("Delete them?"), t("delete them")):
        return 1
    deleted = await runtime.service.prune(before, statuses)
    print(render.prune_counts(deleted, statuses, before, done=True))
    return 0


def _cutoff(age: str) -> datetime:
    """The moment `--older-than AGE` names: now less the age."""
    try:
        return utcnow() - _duration(age)
    except argparse.ArgumentTypeError as exc:
        raise InvalidRequest(f"--older-than: {exc}") from None
    except OverflowError:
        raise InvalidRequest(
            t("--older-than: {age} reaches back before the year 1", age=repr(age))
        ) from None


def _finished_statuses(text: str) -> list[TaskStatus]:
    """`--status succeeded,failed` as statuses, each one a finished status."""
    statuses = []
    for word in text.split(","):
        if word.strip() not in TERMINAL:
            raise InvalidRequest(
                t(
                    "--status: {word} is not a finished status ({finished});"
                    " queued and running tasks are never pruned",
                    word=repr(word.strip()),
                    finished=", ".join(FINISHED),
                )
            )
        statuses.append(TaskStatus(word.strip()))
    return list(dict.fromkeys(statuses))


def _confirmed(question: str, action: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidRequest(
            t("not asking without a terminal: add --yes to {action}", action=action)
        )
    answer = input(t("{question} [y/N] ", question=question)).strip().lower()
    return answer in ("y", "yes", t("y"), t("yes"))


async def cmd_dead(runtime: Runtime, args: argparse.Namespace) -> int:
    from core.dead_letters import DeadLetters

    dead = DeadLetters(runtime.queue)
    if args.dead_action == "retry":
        for letter in await dead.retry(args.dead_ids):
            print(t("dead letter {id} requeued (task {task}, {step})", id=letter.id,
                    task=letter.task_id, step=letter.step))  # fmt: skip
        return 0
    if args.dead_action == "drop":
        for letter in await dead.drop(args.dead_ids):
            print(t("dead letter {id} dropped (task {task}, {step})", id=letter.id,
                    task=letter.task_id, step=letter.step))  # fmt: skip
        return 0
    letters = await dead.list_all()
    if args.json:
        _print_json([render.dead_dict(letter) for letter in letters])
    else:
        print(render.dead_table(letters, shutil.get_terminal_size().columns))
    return 0


# The dispatch table of the commands that run on a Runtime (main dispatches the rest: the
# cli_tools commands, which take the settings only, then schema, serve and the dashboard).
# Start-up rule, kept by tests/integration/test_startup.py: a handler imports what only it needs
# inside its body (as cmd_worker does), never at the top of this module, which every command
# pays for. A new command: a parser in build_parser, an `async def cmd_name(runtime, args)`
# here, and its entry below; if it must not load the store or the queue, dispatch it in main
# before the Runtime is built, as schema and serve are.
COMMANDS: dict[str, Command] = {
    "submit": cmd_submit,
    "list": cmd_list,
    "show": cmd_show,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "prune": cmd_prune,
    "stats": cmd_stats,
    "dead": cmd_dead,
}


def _run_guarded(run: Callable[[], Any]) -> int:
    try:
        result = run()
    except InvalidRequest as exc:
        return _fail(_cli_field_message(exc))
    except VideoqError as exc:
        return _fail(outside_text(exc.message))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141  # the reader (`| head`) went away: not an error worth a traceback
    return result if isinstance(result, int) else 0


def _cli_field_message(exc: InvalidRequest) -> str:
    if exc.field in {"prompt", "model", "duration", "aspect_ratio", "hd", "images"}:
        option = "--image" if exc.field == "images" else "--" + exc.field.replace("_", "-")
        reason = outside_text(exc.message.split(": ", 1)[-1])
        return t("invalid {option}: {reason}", option=option, reason=reason)
    return outside_text(exc.message)


def _print_json(value: Any) -> None:
    # Prompts in any language print as typed, not as \u escapes.
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _fail(message: str) -> int:
    print(t("videoq: error: {message}", message=message), file=sys.stderr)
    return 1


def _status(value: str) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise InvalidRequest(
            t(
                "--status must be one of {statuses}, not {value}",
                statuses=", ".join(TaskStatus),
                value=repr(value),
            )
        ) from None


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            t("{value} is not a whole number", value=repr(value))
        ) from None
    if number < 0:
        raise argparse.ArgumentTypeError(t("must not be negative"))
    return number


def _limit(value: str) -> int:
    number = _count(value)
    if not 1 <= number <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(
            t("must be from 1 to {most}, not {number}", most=MAX_LIST_LIMIT, number=number)
        )
    return number


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> timedelta:
    """`90s`, `30m`, `1h`, `2d` as a timedelta."""
    number, unit = value[:-1], value[-1:].lower()
    if unit not in DURATION_UNITS or not number.isdigit():
        raise argparse.ArgumentTypeError(
            t("{value} is not an age such as 30m, 1h or 2d", value=repr(value))
        )
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


def _stopper(stop: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        if not stop.is_set():
            log.info("%s received: draining in-flight steps", sig.name)
        stop.set()

    return handler


def _configure_logging(settings: Settings, *, quiet: bool) -> None:
    # One-shot commands print their result on stdout; their logs go to stderr, warnings only.
    level = max(logging.getLevelName(settings.log_level), logging.WARNING if quiet else 0)
    logging.basicConfig(
        level=level,
        stream=sys.stderr if quiet else sys.stdout,
        format=render.LOG_FORMAT,
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(render.VisibleFormatter(render.LOG_FORMAT))
    for noisy in ("httpx", "httpcore", "hpack", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
