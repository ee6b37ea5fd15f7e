"""Finds the catalog's keys that tui/ uses, by reading its source (AST), for the catalog tests."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

TUI = Path(__file__).resolve().parent.parent / "tui"
LOOKUPS = {"t", "N_"}


@dataclass(frozen=True)
class Use:
    """One catalog key used in tui/: the text, where, and (for tn) its plural form."""

    text: str
    where: str
    many: str | None = None


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def uses_in(source: str, where: str) -> list[Use]:
    """Every literal key in one module: t(), tn() and N_() calls, and Binding texts."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node)
        at = f"{where}:{node.lineno}"
        if name in LOOKUPS and node.args and (text := _literal(node.args[0])) is not None:
            found.append(Use(text, at))
        elif name == "tc" and len(node.args) >= 2:
            context, text = _literal(node.args[0]), _literal(node.args[1])
            if context is not None and text is not None:
                found.append(Use(f"{context}\x04{text}", at))
        elif name == "tn" and len(node.args) >= 2:
            one, many = _literal(node.args[0]), _literal(node.args[1])
            if one is not None:
                found.append(Use(one, at, many))
        elif name == "Binding":
            texts = [node.args[2]] if len(node.args) > 2 else []
            texts += [k.value for k in node.keywords if k.arg in ("description", "tooltip")]
            found += [Use(text, at) for n in texts if (text := _literal(n))]
    return found


def catalog_uses() -> list[Use]:
    """Every literal key used anywhere in tui/ (the catalog modules themselves aside)."""
    found = []
    for path in sorted(TUI.rglob("*.py")):
        if path.parent.name != "i18n":
            found += uses_in(path.read_text(encoding="utf-8"), str(path.relative_to(TUI.parent)))
    return [use for use in found if use.text]
