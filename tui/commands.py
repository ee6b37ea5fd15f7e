"""The command palette (ctrl+p): the dashboard's own bindings, offered only where they apply."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from functools import partial
from typing import Any

from textual.actions import parse
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

from tui.i18n import t

# Keys that only make sense pressed, not picked from a list.
NOT_IN_PALETTE = frozenset({"clear"})


def palette_bindings(*owners: DOMNode) -> Iterator[tuple[DOMNode, Binding]]:
    """Every binding of `owners` worth a palette entry, with the node that runs it."""
    for owner in owners:
        for binding in owner.BINDINGS:
            if isinstance(binding, Binding) and binding.id and binding.id not in NOT_IN_PALETTE:
                yield owner, binding


def entry_help(binding: Binding, key: str) -> str:
    return f"{t(binding.tooltip or binding.description)} ({key})"


class TaskCommands(Provider):
    """Offers the same actions as the keys, hiding those `check_action` says do not apply."""

    def _available(self) -> list[tuple[str, str, partial[Coroutine[Any, Any, bool]]]]:
        app = self.app
        owners: list[DOMNode] = [app]
        table = getattr(app, "table", None)
        if table is not None:
            owners.insert(0, table)
        found = []
        for owner, binding in palette_bindings(*owners):
            _, name, params = parse(binding.action)
            if owner.check_action(name, params):
                run = partial(app.run_action, binding.action, owner)
                help_text = entry_help(binding, app.get_key_display(binding))
                found.append((t(binding.description), help_text, run))
        return found

    async def discover(self) -> Hits:
        for title, help_text, run in self._available():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._available():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
