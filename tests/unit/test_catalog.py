"""The message catalog: every key tui/ uses exists in Chinese, none is left over, placeholders
match, the language is chosen as documented, and core's fixed-shape messages are translated."""

from __future__ import annotations

import string
import subprocess
import sys

import msgspec.structs
import pytest

from core.config import Settings, settings_problem
from core.errors import ConfigError, InvalidRequest
from core.models import Task, TaskStatus, VideoRequest, cancel_refusal
from core.wiring import choose
from tests.catalog_scan import Use, catalog_uses, uses_in
from tui.i18n import EN, ZH_CN, language_from, outside_text, t, tc, tn, using
from tui.i18n.zh_CN import MESSAGES, PATTERNS


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_scan_finds_every_kind_of_use() -> None:
    # Guards the tests below: a scan that found nothing would pass them all.
    source = (
        't("a {x}", x=1)\nN_("b")\ntn("{count} c", "{count} cs", 2)\ntc("when", "d")\n'
        'Binding("k", "act", "E", tooltip="F")\nt(variable)\n'
    )
    found = {use.text for use in uses_in(source, "m.py")}
    assert found == {"a {x}", "b", "{count} c", "when\x04d", "E", "F"}
    assert len(catalog_uses()) > 300


def test_every_key_used_in_tui_has_its_chinese() -> None:
    missing = [f"{use.where}: {use.text!r}" for use in catalog_uses() if use.text not in MESSAGES]
    assert missing == []


def test_the_catalog_has_no_entry_that_nothing_uses() -> None:
    used = {use.text for use in catalog_uses()}
    assert sorted(set(MESSAGES) - used) == []


def test_placeholders_match_between_the_languages() -> None:
    def wrong(use: Use) -> bool:
        english = placeholders(use.many if use.many is not None else use.text)
        return placeholders(MESSAGES.get(use.text, use.text)) != english

    assert [(use.where, use.text) for use in catalog_uses() if wrong(use)] == []


def test_pattern_templates_use_only_their_groups() -> None:
    import re

    for pattern, template in PATTERNS:
        assert placeholders(template) <= set(re.compile(pattern).groupindex), pattern


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, EN),
        ({"VIDEOQ_LANG": "zh_CN"}, ZH_CN),
        ({"VIDEOQ_LANG": "zh-CN"}, ZH_CN),
        ({"VIDEOQ_LANG": "en", "LANG": "zh_CN.UTF-8"}, EN),
        ({"LANG": "zh_CN.UTF-8"}, ZH_CN),
        ({"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, ZH_CN),
        ({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}, EN),
        ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "C"}, ZH_CN),
        ({"LC_ALL": "", "LC_MESSAGES": "", "LANG": "zh_CN.gb18030"}, ZH_CN),
        ({"LANG": "zh_TW.UTF-8"}, EN),  # traditional Chinese is not in the catalog
        ({"VIDEOQ_LANG": "fr"}, EN),
    ],
)
def test_the_language_follows_videoq_lang_then_the_locale(
    env: dict[str, str], expected: str
) -> None:
    assert language_from(env) == expected


def test_lookups_in_both_languages() -> None:
    assert t("task {id} queued", id="3f2a1b2c") == "task 3f2a1b2c queued"
    assert tn("{count} line", "{count} lines", 2) == "2 lines"
    assert tc("when", "queued") == "queued"
    with using(ZH_CN):
        assert t("task {id} queued", id="3f2a1b2c") == "任务 3f2a1b2c 已排队"
        assert tn("{count} line", "{count} lines", 2) == "2 行"
        assert tc("when", "queued") == "排队"
        assert t("a text the catalog lacks") == "a text the catalog lacks"


def _refused(data: dict[str, object]) -> str:
    try:
        VideoRequest.parse(data)
    except InvalidRequest as exc:
        return exc.message
    raise AssertionError(f"{data} was accepted")


def _bad_setting(**values: object) -> str:
    try:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        return settings_problem(exc)
    raise AssertionError(f"{values} was accepted")


def _bad_choice() -> str:
    try:
        choose({"sqlite": 1, "supabase": 2}, "VIDEOQ_STORE", "nope")
    except ConfigError as exc:
        return exc.message
    raise AssertionError("store 'nope' was accepted")


def test_core_messages_are_translated_at_display() -> None:
    # Each English text comes from the core code that writes it, so a change of wording there
    # fails here instead of silently leaving the message in English.
    done = msgspec.structs.replace(
        Task.new(VideoRequest(prompt="a fox")), id="3f2a1b2c-0000", status=TaskStatus.SUCCEEDED
    )
    refusal = cancel_refusal(done)
    assert refusal is not None
    cases = [
        (refusal, "任务 3f2a1b2c 已是已成功状态；只有排队中或运行中的任务可以取消"),
        (_refused({"prompt": " "}), "prompt：不能为空"),
        (_refused({"prompt": "x" * 4001}), "prompt：超过 4,000 个字符"),
        (_refused({"prompt": "a", "duration": 7}), "duration：必须是 10, 15 或 25"),
        (_bad_setting(concurrency=0), "设置 VIDEOQ_CONCURRENCY 无效：必须至少为 1"),
        (_bad_setting(sim_speedup="abc"), "设置 VIDEOQ_SIM_SPEED 无效：必须是数字"),
        (_bad_choice(), "VIDEOQ_STORE 必须是 sqlite, supabase 之一，而不是 'nope'"),
    ]
    with using(ZH_CN):
        for english, chinese in cases:
            assert outside_text(english) == chinese, english
        outage = "degraded: QStash unreachable since 2025-06-01 12:00:00 UTC"
        assert outside_text(outage) == "降级：QStash 自 2025-06-01 12:00:00 UTC 起无法连接"
        upstream = "视频内容审核未通过"
        assert outside_text(upstream) == upstream
        assert outside_text("upstream overloaded, try later") == "upstream overloaded, try later"
    assert all(outside_text(english) == english for english, _ in cases)


def test_the_catalog_imports_nothing_heavy() -> None:
    # Every one-shot command imports it (issue #14's start-up work).
    code = "import sys, tui.i18n, tui.i18n.zh_CN; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich", "pydantic", "core")}
