"""msgspec's validation errors in plain words: the one place their text is read.

"Expected `array` of length <= 4 - at `$.images`" becomes ("images", "at most 4 images");
"Expected `str` of length <= 4000 - at `$.prompt`" becomes ("prompt", "is longer than 4,000
characters"). A rule of our own (a `ValueError` with a `field`, raised in `__post_init__`)
names the field it blames and says what is wrong in its own words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from core.models import VideoRequest

# The noun a collection field counts, for "at most 4 images".
ITEM_NOUNS = {"images": "images"}
TYPE_WORDS = {
    "bool": "must be true or false",
    "int": "must be a whole number",
    "float": "must be a number",
    "str": "must be text",
    "array": "must be a list",
    "object": "must be an object",
    "null": "must be empty",
}
BOUND_WORDS = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than"}

_LOCATED = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`$")
_PLAIN: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]], ...] = (
    (
        re.compile(r"^Expected `str` of length <= (?P<n>\d+)$"),
        lambda m, field: f"is longer than {int(m['n']):,} characters",
    ),
    (re.compile(r"^Expected `str` of length >= 1$"), lambda m, field: "must not be blank"),
    (
        re.compile(r"^Expected `array` of length <= (?P<n>\d+)$"),
        lambda m, field: f"at most {m['n']} {ITEM_NOUNS.get(field, 'items')}",
    ),
    (
        re.compile(r"^Expected `\w+` (?P<op>[<>]=?) (?P<n>\S+)$"),
        lambda m, field: f"must be {BOUND_WORDS[m['op']]} {m['n'].removesuffix('.0')}",
    ),
    (
        re.compile(r"^Expected `(?P<type>\w+)(?: \| null)?`, got `\w+`$"),
        lambda m, field: TYPE_WORDS.get(m["type"], f"must be of type {m['type']}"),
    ),
    (re.compile(r"^Object missing required field `[^`]+`$"), lambda m, field: "is required"),
    (
        re.compile(r"^Object contains unknown field `[^`]+`$"),
        lambda m, field: "is not a known field",
    ),
    (
        re.compile(r"^Invalid enum value (?P<value>.+)$"),
        lambda m, field: f"unknown value {m['value']}",
    ),
)


def problem(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The field `exc` is about ("request" for the whole thing) and what is wrong, plainly."""
    blamed = getattr(exc.__cause__, "field", None)  # a rule of ours names the field to blame
    located = _LOCATED.match(str(exc))
    assert located is not None  # the pattern matches any text
    text, path = located["text"], located["path"] or ""
    if isinstance(blamed, str):
        return blamed, text
    named = _FIELD_NAMED.match(text)
    if named and not path:
        field = named["name"]
    else:
        field = re.split(r"[.\[]", path.removeprefix("."), maxsplit=1)[0] or "request"
    return field, plain_reason(text, field)


def plain_reason(text: str, field: str) -> str:
    """What is wrong, in words a person reads (no msgspec phrasing)."""
    for pattern, words in _PLAIN:
        if matched := pattern.match(text):
            return words(matched, field)
    return text


def every_problem(model: type[VideoRequest], data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem `model.validate` finds in `data`, in field order, cross-field rules included.

    msgspec stops at the first problem; so each field found bad is set aside (left out, or a
    placeholder when it is required) and the rest checked again, until nothing more is found.
    """
    fields = {info.name: info for info in msgspec.structs.fields(model)}
    found: dict[str, str] = {}
    checking = dict(data)
    for _ in range(len(fields) + len(data) + 1):
        try:
            model.validate(checking)
            break
        except msgspec.ValidationError as exc:
            field, reason = problem(exc)
        if field in found:
            break  # setting it aside did not help: nothing more to learn
        found[field] = reason
        checking.pop(field, None)
        if field in fields and fields[field].required:
            checking[field] = "x"
    order = list(fields)
    return sorted(found.items(), key=lambda item: order.index(item[0]) if item[0] in order else -1)
