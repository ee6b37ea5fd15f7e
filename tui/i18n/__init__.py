"""The message catalog: every string the dashboard and the command line show a person.

The English text in the source is the key; `zh_CN.py` holds its Simplified Chinese. `t()` looks a
text up in the language chosen for this process, `tn()` does the same for a count, and `N_()`
marks a text for the catalog where it is declared (a constant) and translated later, when shown.
This module imports only the standard library: every one-shot command pays for its import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

EN = "en"
ZH_CN = "zh_CN"
LANGUAGES = (EN, ZH_CN)
# POSIX precedence: the first of these that is set names the messages' locale.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")

_chosen: str | None = None


def language_from(env: Mapping[str, str]) -> str:
    """The language `env` selects: VIDEOQ_LANG, else a zh_CN locale, else English."""
    explicit = env.get("VIDEOQ_LANG", "").strip()
    if explicit:
        return _language_of(explicit)
    for name in LOCALE_VARIABLES:
        if value := env.get(name, "").strip():
            return _language_of(value)
    return EN


def _language_of(value: str) -> str:
    # `zh_CN.UTF-8`, `zh-CN`, `zh_Hans`, `zh_SG` and a bare `zh` read as Simplified Chinese.
    tag = value.split(".")[0].split("@")[0].replace("-", "_").lower()
    return ZH_CN if tag in ("zh", "zh_cn", "zh_sg", "zh_hans", "zh_hans_cn") else EN


def language() -> str:
    """The language of this process (read from the environment once)."""
    global _chosen
    if _chosen is None:
        _chosen = language_from(os.environ)
    return _chosen


@contextmanager
def using(code: str) -> Iterator[None]:
    """Show messages in `code` inside the block (tests; the process's choice is restored)."""
    global _chosen
    saved, _chosen = _chosen, code
    try:
        yield
    finally:
        _chosen = saved


def _catalog() -> Mapping[str, str]:
    if language() == EN:
        return {}
    from tui.i18n.zh_CN import MESSAGES

    return MESSAGES


def t(text: str, /, **values: object) -> str:
    """`text` in this process's language, its `{placeholders}` filled from `values`."""
    return _catalog().get(text, text).format_map(values)


def tn(one: str, many: str, count: int, /, **values: object) -> str:
    """`one` or `many` by `count` (English has two forms, Chinese one: the catalog's `one`)."""
    chosen = _catalog().get(one) or (one if count == 1 else many)
    return chosen.format_map({"count": count, **values})


def tc(context: str, text: str, /, **values: object) -> str:
    """`text` where one English word needs two Chinese ones: the catalog's key is the context
    and the text joined by gettext's separator (`when\x04queued`, the time it was queued)."""
    found = _catalog().get(f"{context}\x04{text}", text)
    return found.format_map(values)


def N_(text: str) -> str:
    """Mark `text` for the catalog without translating it yet (it is translated when shown)."""
    return text


def outside_text(message: str) -> str:
    """A message from core or argparse in this process's language, where its shape is one the
    catalog knows (refusals, request validation, argparse's errors); anything else, upstream
    reasons included, as it came."""
    if language() == EN:
        return message
    from tui.i18n.zh_CN import MESSAGES, PATTERNS

    if message in MESSAGES:
        return MESSAGES[message]
    for pattern, template in PATTERNS:
        if found := re.fullmatch(pattern, message, flags=re.DOTALL):
            parts = {
                name: part if name.startswith("raw") else outside_text(part)
                for name, part in found.groupdict().items()
            }
            return template.format_map(parts)
    return message
