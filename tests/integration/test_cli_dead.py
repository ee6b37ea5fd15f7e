"""`videoq dead`: the local queue's dead letters listed, requeued and dropped from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli
from tests.dead_letters import dead_lettered


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.on(tmp_path / "videoq.db")


async def test_dead_lists_each_dead_letter_with_its_task_and_reason(cli: Cli) -> None:
    [dead_id] = await dead_lettered(cli.db_path, "task-a")
    table = cli.ok("dead")
    assert "upstream refused the key" in table and "task-a" in table and "489" in table
    [entry] = cli.json("dead")
    assert entry["id"] == dead_id
    assert (entry["task_id"], entry["step"], entry["last_status"]) == ("task-a", "submit 1", 489)


async def test_dead_retry_and_drop_take_unique_prefixes_and_empty_the_list(cli: Cli) -> None:
    first, second = await dead_lettered(cli.db_path, "task-a", "task-b")
    assert "requeued" in cli.ok("dead", "retry", first[:20])
    assert "dropped" in cli.ok("dead", "drop", second)
    assert cli.json("dead") == []
    assert cli.ok("dead") == "no dead letters\n"


async def test_an_unknown_dead_letter_is_refused_and_nothing_changes(cli: Cli) -> None:
    [dead_id] = await dead_lettered(cli.db_path, "task-a")
    done = cli.run("dead", "drop", dead_id, "msg_nosuch")
    assert done.returncode == 1
    assert "no dead letter 'msg_nosuch'" in done.stderr
    assert [entry["id"] for entry in cli.json("dead")] == [dead_id]
