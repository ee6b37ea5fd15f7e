"""`videoq` in Simplified Chinese: what a person reads changes, what a program reads does not,
and CJK text lines up by terminal cells in both languages."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from core.models import TaskStatus
from core.runtime import Runtime
from core.store import Expect
from tests.cli import Cli
from tests.dashboard_helpers import make_settings

PROMPTS = ("一只猫在雨中的东京街头散步，电影感", "A red fox trotting through fresh snow at dawn")
QUEUED = Expect(frozenset({TaskStatus.QUEUED}))
REASONS = ("视频内容审核未通过，请修改提示词后重试", "upstream: content policy")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A store with two failed tasks (one reason in Chinese), a cancelled and a queued one; the
    tests only read it."""
    db_path = tmp_path_factory.mktemp("language") / "videoq.db"
    cli = Cli.on(db_path)
    ids = [cli.ok("submit", "--prompt", prompt).strip() for prompt in PROMPTS * 2]
    asyncio.run(_fail(db_path, ids[:2]))
    cli.ok("cancel", ids[2])
    return cli


async def _fail(db_path: Path, ids: list[str]) -> None:
    async with Runtime.from_settings(make_settings(db_path)) as runtime:
        for task_id, reason in zip(ids, REASONS, strict=True):
            changes = {"status": TaskStatus.FAILED, "error_message": reason}
            assert await runtime.store.update(task_id, QUEUED, changes) is not None


def chinese(cli: Cli, **more: str) -> Cli:
    return Cli(cli.db_path, {**cli.env, "VIDEOQ_LANG": "zh_CN", **more})


@pytest.mark.parametrize("args", [("list",), ("dead",), ("stats", "--since", "1d")])
def test_json_output_is_byte_identical_in_chinese(cli: Cli, args: tuple[str, ...]) -> None:
    english = cli.run(*args, "--json")
    for other in (chinese(cli), chinese(cli, VIDEOQ_LANG="", LANG="zh_CN.UTF-8")):
        done = other.run(*args, "--json")
        assert (done.returncode, _still(done.stdout)) == (0, _still(english.stdout))
    assert english.returncode == 0 and english.stdout.strip()


def _still(output: str) -> str:
    # `stats` says where its window starts, a moment that moves from one run to the next.
    return re.sub(r'"since": "[^"]*"', '"since": …', output)


def test_exit_statuses_are_the_same_and_only_the_words_change(cli: Cli) -> None:
    (task_id,) = [task["id"] for task in cli.json("list") if task["status"] == "cancelled"]
    english, zh = cli.run("cancel", task_id), chinese(cli).run("cancel", task_id)
    assert english.returncode == zh.returncode == 1
    assert "already cancelled" in english.stderr
    assert "已是已取消状态" in zh.stderr and "已取消" in zh.stderr
    bad_en, bad_zh = cli.run("list", "--limit", "0"), chinese(cli).run("list", "--limit", "0")
    assert bad_en.returncode == bad_zh.returncode == 2
    assert "错误" in bad_zh.stderr and "用法：" in bad_zh.stderr and "usage:" not in bad_zh.stderr


def test_help_is_in_chinese_with_argparse_s_own_words(cli: Cli) -> None:
    text = chinese(cli).ok("--help")
    assert text.startswith("用法：videoq")
    assert "显示此帮助并退出" in text and "提交一个新的视频任务并打印其 id" in text
    assert "usage:" not in text and "show this help" not in text
    sub = chinese(cli).ok("retry", "--help")
    assert "重试所有已失败的任务" in sub and "示例：videoq retry 3f2a9c1e" in sub
    # Headings end with the full-width colon, as "用法：" does; English keeps argparse's.
    assert "\n位置参数：\n" in text and "\n选项：\n" in text and "选项:" not in text
    assert "\noptions:\n" in cli.ok("--help")


@pytest.mark.parametrize("width", [60, 80])
def test_chinese_help_wraps_by_cells(cli: Cli, width: int) -> None:
    narrow = chinese(cli, COLUMNS=str(width))
    for args in (("--help",), ("schedule", "--help"), ("retry", "--help")):
        lines = narrow.ok(*args).splitlines()
        assert max(cell_len(line) for line in lines) <= width, args
        assert not any(line.rstrip().endswith("（") for line in lines)
    text = narrow.ok("--help").replace("\n", "").replace(" ", "")
    assert "与--no-ui一起用：没有排队或运行中的任务时停止" in text  # nothing lost in the wrapping


def _column_starts(lines: list[str], texts: list[str]) -> set[int]:
    """The cell offset at which each line's text (a prompt or reason prefix) starts."""
    starts = set()
    for line, text in zip(lines, texts, strict=True):
        assert text in line, (text, line)
        starts.add(cell_len(line[: line.index(text)]))
    return starts


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_list_aligns_cjk_prompts_and_reasons_by_cells(cli: Cli, width: int, language: str) -> None:
    shown = Cli(cli.db_path, {**cli.env, "VIDEOQ_LANG": language, "COLUMNS": str(width)})
    lines = shown.ok("list").splitlines()
    assert len(lines) == 5 and all(cell_len(line) <= width for line in lines)
    header, rows = lines[0], lines[1:]
    prompts = [PROMPTS[(3 - n) % 2][:4] for n in range(4)]  # newest first
    assert len(_column_starts([header, *rows], [header.split()[-2], *prompts])) == 1
    failed = [row for row in rows if "content" in row or "视频" in row]
    reasons = ["视频内" if "视频" in row else "upstre" for row in failed]
    assert len(failed) == 2 and len(_column_starts(failed, reasons)) == 1


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_stats_aligns_cjk_reasons_by_cells(cli: Cli, width: int, language: str) -> None:
    shown = Cli(cli.db_path, {**cli.env, "VIDEOQ_LANG": language, "COLUMNS": str(width)})
    lines = shown.ok("stats").splitlines()
    assert all(cell_len(line) <= width for line in lines)
    groups = [line for line in lines if "视频内" in line or "upstream:" in line]
    assert len(groups) == 2
    starts = _column_starts(groups, ["视频内" if "视频内" in g else "upstream:" for g in groups])
    assert len(starts) == 1
