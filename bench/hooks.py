"""QStash messages per task with and without T8Star's notify hooks, in the cloud shape.

    uv run python bench/hooks.py [--per-class 3] [--speedup 20]

Everything runs on loopback as in bench/http_service.py: the service in this process, the QStash
and T8Star fakes in threads (the fake calls each job's notify hook when the job ends), SQLite as
the store. Jobs of known length run `--speedup` times faster than real time; QStash delays stay
whole seconds. Three modes: hooks off (polls only), hooks on, and hooks on but every hook lost on
the way (only the safety-net polls remain). Messages are counted the way QStash bills them: every
publish plus every redelivery. "late" is how long after the job ended upstream the task ended
here, in seconds of the upstream's clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

from http_service import JOBS, cloud_settings, submit_jobs, wait_terminal  # noqa: E402

from core.runtime import Runtime  # noqa: E402
from tests.fakes.t8star import FakeT8Star  # noqa: E402
from tests.http_support import SECRET_KEY, RecordingQStash, in_process, loopback_socket  # noqa: E402

MODES = {  # label -> (hooks on, hooks lost)
    "hooks off": (False, False),
    "hooks on": (True, False),
    "hooks on, all lost": (True, True),
}


async def run_mode(hooks: bool, lost: bool, speedup: float, per_class: int) -> dict[str, list]:
    """Per job class: (messages, hook calls, seconds late) of each task."""
    fakes = FakeT8Star(), RecordingQStash(time_scale=1.0), tempfile.TemporaryDirectory()
    with fakes[0] as t8, fakes[1] as qstash, fakes[2] as tmp:
        if lost:
            t8.silence_hooks()
        sock = loopback_socket()
        extra = {"secret_key": SECRET_KEY} if hooks else {}
        settings = cloud_settings(Path(tmp) / "v.db", sock, qstash.url, t8.base_url,
                                  speedup=speedup, **extra)  # fmt: skip
        runtime = Runtime.from_settings(settings)
        assert (runtime.hooks is not None) is hooks
        async with runtime, in_process(runtime, sock, background=True):
            classes = await submit_jobs(runtime, t8, speedup, per_class)
            longest = max(seconds for _, _, seconds in JOBS)
            await wait_terminal(runtime, timeout=longest * 2 / speedup + 60)
            billed = qstash.billed_per_task()
            rows: dict[str, list] = {}
            for label, _, seconds in JOBS:
                for task_id in classes[label]:
                    task = await runtime.store.get(task_id)
                    assert task is not None and task.started_at and task.completed_at
                    ran = (task.completed_at - task.started_at).total_seconds() * speedup
                    hook_calls = len(t8.hook_calls(task.upstream_task_id))
                    entry = (billed.get(task_id, 0), hook_calls, max(0.0, ran - seconds))
                    rows.setdefault(label, []).append(entry)
    return rows


def table(results: dict[str, dict[str, list]]) -> None:
    header = ("job", "mode", "tasks", "messages mean", "max", "hook calls", "late mean s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, _, _ in JOBS:
        for mode, rows in results.items():
            entries = rows[label]
            messages = [entry[0] for entry in entries]
            print(f"| {label} | {mode} | {len(entries)} | {statistics.mean(messages):.1f} | "
                  f"{max(messages)} | {statistics.mean(e[1] for e in entries):.1f} | "
                  f"{statistics.mean(e[2] for e in entries):.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=3, help="tasks per job class")
    parser.add_argument("--speedup", type=float, default=20.0, help="clock scale of the fakes")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    print(f"speedup x{args.speedup:g}, {args.per_class} tasks per job class\n")
    results = {
        mode: asyncio.run(run_mode(hooks, lost, args.speedup, args.per_class))
        for mode, (hooks, lost) in MODES.items()
    }
    table(results)


if __name__ == "__main__":
    main()
