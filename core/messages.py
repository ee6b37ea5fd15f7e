"""Pydantic's validation errors in plain words: the one place their types and locations are read.

"Tuple should have at most 4 items after validation" becomes "at most 4 images"; "String should
have at most 4000 characters" becomes "is longer than 4,000 characters".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# The noun a collection field counts, for "at most 4 images".
ITEM_NOUNS = {"images": "images"}
TYPE_WORDS = {
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "string_type": "must be text",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def field_of(error: ErrorDetails) -> str:
    """The top-level field an error is about ("request" for the whole thing)."""
    cause = error.get("ctx", {}).get("error")
    blamed = getattr(cause, "field", None)  # a cross-field rule names the field to blame
    if isinstance(blamed, str):
        return blamed
    return str(error["loc"][0]) if error["loc"] else "request"


def plain_reason(error: ErrorDetails) -> str:
    """What is wrong, in words a person reads (no pydantic phrasing)."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "string_too_long":
        return f"is longer than {ctx['max_length']:,} characters"
    if kind == "string_too_short":
        return "must not be blank"
    if kind == "too_long":
        noun = ITEM_NOUNS.get(field_of(error), "items")
        return f"at most {ctx['max_length']} {noun}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind in TYPE_WORDS:
        return TYPE_WORDS[kind]
    return error["msg"].removeprefix("Value error, ")


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, plain reason) for every error, one per field, in the order pydantic found them."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        found.setdefault(field_of(error), plain_reason(error))
    return list(found.items())


def every_problem(model: type[BaseModel], data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem with `data`, in field order, cross-field rules included.

    Pydantic checks rules that span fields only once every field is valid on its own; so the
    fields found bad are set aside (to their defaults) and the rest checked again.
    """
    try:
        model.model_validate(data)
        return []
    except ValidationError as exc:
        found = dict(problems(exc))
    neutral = {
        name: info.default if not info.is_required() else "x"
        for name, info in model.model_fields.items()
        if name in found
    }
    try:
        model.model_validate({**data, **neutral})
    except ValidationError as exc:
        for field, reason in problems(exc):
            found.setdefault(field, reason)
    order = list(model.model_fields)
    return sorted(found.items(), key=lambda item: order.index(item[0]) if item[0] in order else -1)
