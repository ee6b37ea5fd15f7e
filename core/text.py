"""Text from elsewhere (an upstream's reason, a prompt, an error) made fit to show on one line."""

from __future__ import annotations

ELLIPSIS = "…"
# C0 and C1 control characters and DEL: a terminal would act on them (escape sequences, bells).
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")


# The same, but keeping line breaks, for views that show a text over several lines.
_CONTROLS_BUT_NEWLINE = {**_CONTROLS, ord("\n"): "\n"}


def unstorable(text: str) -> str | None:
    """Why PostgreSQL could not keep `text` (it refuses NUL and lone surrogates), or None."""
    if "\x00" in text:
        return "must not contain a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it has an unpaired surrogate)"
    return None


def visible_lines(text: str | None) -> str:
    """`text` with its line breaks kept and every other control character made a space."""
    lines = (text or "").replace("\r\n", "\n").translate(_CONTROLS_BUT_NEWLINE).split("\n")
    return "\n".join(line.rstrip() for line in lines)


def one_line(text: str | None, limit: int | None = None) -> str:
    """`text` without control characters, its whitespace collapsed, cut to `limit` characters.

    A cut text ends in an ellipsis, which counts towards `limit`.
    """
    line = " ".join((text or "").translate(_CONTROLS).split())
    if limit is None or len(line) <= limit:
        return line
    return line[: max(0, limit - 1)].rstrip() + ELLIPSIS
