"""Dead letters, the one place the CLI and the dashboard list, requeue and drop them.

A dead letter is a step message the queue gave up on (out of retries, or refused for good):
the local queue's dead list or QStash's DLQ, through the Queue port. Ids may be given as unique
prefixes; a batch is checked whole before anything changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from msgspec import Struct

from core.errors import InvalidRequest
from core.queue import DeadLetter, Queue

log = logging.getLogger(__name__)

SHORT_ID = 12
"""Characters of a long dead-letter id the listings show; any unique prefix is accepted."""


def short_dead_id(dead_id: str) -> str:
    """The id as listings show it: the local queue's long message ids cut, QStash's kept."""
    return dead_id if len(dead_id) <= SHORT_ID + 4 else dead_id[:SHORT_ID]


class DeadLetters(Struct):
    """Lists a queue's dead letters and requeues or drops them by id or unique prefix."""

    queue: Queue

    async def list_all(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        return await self.queue.dead_letters()

    async def retry(self, prefixes: list[str]) -> list[DeadLetter]:
        """Deliver the named dead letters again; returns those requeued."""
        return await self._each(prefixes, self.queue.retry_dead, "requeued")

    async def drop(self, prefixes: list[str]) -> list[DeadLetter]:
        """Delete the named dead letters for good; returns those dropped."""
        return await self._each(prefixes, self.queue.drop_dead, "dropped")

    async def resolve(self, prefixes: list[str]) -> list[DeadLetter]:
        """The dead letters `prefixes` name, or InvalidRequest naming the first that does not."""
        if not prefixes:
            raise InvalidRequest("give the ids of the dead letters (`videoq dead` lists them)")
        letters = await self.list_all()
        chosen: dict[str, DeadLetter] = {}
        for prefix in prefixes:
            matches = [letter for letter in letters if letter.id.startswith(prefix)]
            exact = [letter for letter in matches if letter.id == prefix]
            if exact:
                matches = exact
            if not prefix or not matches:
                raise InvalidRequest(f"no dead letter {prefix!r} (`videoq dead` lists them)")
            if len(matches) > 1:
                raise InvalidRequest(f"dead-letter id prefix {prefix!r} matches several")
            chosen[matches[0].id] = matches[0]
        return list(chosen.values())

    async def _each(
        self, prefixes: list[str], act: Callable[[str], Awaitable[bool]], done: str
    ) -> list[DeadLetter]:
        acted = []
        for letter in await self.resolve(prefixes):
            if await act(letter.id):
                log.info("task %s: dead letter %s %s", letter.task_id, letter.id, done)
                acted.append(letter)
            else:
                log.info("dead letter %s was gone already", letter.id)
        return acted
