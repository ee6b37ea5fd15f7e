"""Markup in a stylesheet's style: colours stay in app.tcss, Python names the component class."""

from __future__ import annotations

from textual.widget import Widget


def styled(node: Widget, name: str, text: str) -> str:
    """`text` (markup) wrapped in the style app.tcss gives `node`'s component class `name`."""
    rich = node.get_component_rich_style(name, partial=True)
    return f"[{rich}]{text}[/]" if rich else text
