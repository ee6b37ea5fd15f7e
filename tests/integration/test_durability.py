"""A worker killed with SIGKILL mid-run loses nothing: a restarted one finishes every task."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.cli import Cli
from tests.waiting import wait_until_sync

TERMINAL = {"succeeded", "failed", "cancelled"}


def statuses(cli: Cli) -> list[str]:
    return [row["status"] for row in json.loads(cli.ok("list", "--limit", "1000", "--json"))]


@pytest.mark.slow
def test_sigkill_in_the_middle_of_fifty_tasks_then_restart_finishes_them_all(
    tmp_path: Path,
) -> None:
    cli = Cli.on(
        tmp_path / "videoq.db",
        VIDEOQ_SIM_SPEED="60",
        VIDEOQ_STEP_TIMEOUT="2",
        VIDEOQ_RECONCILE_INTERVAL="1",
        VIDEOQ_CONCURRENCY="4",
    )
    worker = cli.start("--no-ui", "--demo", "50", log=tmp_path / "first.log")

    def going() -> bool:
        seen = statuses(cli) if (tmp_path / "videoq.db").exists() else []
        return len(seen) == 50 and "running" in seen and any(s in TERMINAL for s in seen)

    wait_until_sync(going, "the first worker to get going", 60, interval=0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    before = statuses(cli)
    assert any(s in {"queued", "running"} for s in before), "killed too late to prove anything"

    done = cli.run("--no-ui", "--until-idle", timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = statuses(cli)
    assert len(after) == 50 and set(after) <= TERMINAL
