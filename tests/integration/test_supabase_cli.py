"""Every command works against Supabase once SUPABASE_URL and the service-role key are set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli
from tests.fakes.supabase import FakeSupabase


@pytest.fixture
def cli(tmp_path: Path, empty_supabase: FakeSupabase) -> Cli:
    return Cli.on(
        tmp_path / "queue.db",
        SUPABASE_URL=empty_supabase.url,
        SUPABASE_SERVICE_ROLE_KEY=empty_supabase.service_role_key,
    )


@pytest.mark.slow
def test_submit_list_show_cancel_retry_and_the_worker_run_on_supabase(cli: Cli) -> None:
    first = cli.ok("submit", "--prompt", "on supabase").strip()
    second = cli.ok("submit", "--prompt", "cancel me", "--aspect-ratio", "9:16").strip()
    assert {row["id"] for row in cli.json("list")} == {first, second}
    assert "cancelled" in cli.ok("cancel", second)
    assert "attempt 2" in cli.ok("retry", second)
    done = cli.run("--no-ui", "--until-idle", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "store: supabase: 127.0.0.1" in done.stdout
    rows = {row["id"]: row for row in cli.json("list")}
    assert rows[first]["status"] in {"succeeded", "failed"}
    assert rows[second]["attempt"] == 2 and rows[second]["status"] in {"succeeded", "failed"}
    history = cli.json("show", second)["history"]
    assert [e["actor"] for e in history if e["kind"] == "action"] == ["cli", "cli"]
