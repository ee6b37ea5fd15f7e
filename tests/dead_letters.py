"""Dead letters made for real: steps a local queue delivered and a handler refused for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.models import WorkMessage
from core.queue import Delivery, DeliveryResult
from core.queue.local import LocalQueue
from core.retry import RetryPolicy
from tests.waiting import wait_until

REASON = "upstream refused the key"


async def dead_lettered(db_path: Path, *task_ids: str) -> list[str]:
    """Publish one step per task into the file's queue, refuse each for good; their ids."""
    queue = LocalQueue(
        db_path,
        signing_key="sig_" + "k" * 40,
        destination="http://127.0.0.1/worker",
        retry=RetryPolicy.qstash(),
        concurrency=2,
    )

    async def refuse(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(489, non_retryable=True, reason=REASON)

    await queue.open()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(refuse, stop))
    try:
        for task_id in task_ids:
            await queue.publish(WorkMessage(task_id=task_id, attempt=1, step="submit", seq=1))

        async def all_dead() -> bool:
            return len(await queue.dead_letters()) == len(task_ids)

        await wait_until(all_dead, "the steps to be dead-lettered")
        return [letter.id for letter in await queue.dead_letters()]
    finally:
        stop.set()
        await runner
        await queue.close()
