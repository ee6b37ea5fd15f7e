"""A worker over a real SQLite store and a real upstream client, with the queue in the test's hand.

`HandQueue` keeps what the worker publishes so a test can deliver each message as QStash would
(signed, possibly several times, possibly late) and see exactly which steps were asked for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from core import signing
from core.models import Task, TaskStatus, VideoRequest, WorkMessage
from core.queue import DeadLetter, Delivery, DeliveryResult, QueueStats
from core.schedule import PollSchedule
from core.service import TaskService
from core.store.sqlite import SqliteStore
from core.upstream import Upstream
from core.worker import SigningKeys, StepWorker, WorkerTiming
from tests.waiting import TIMEOUT, wait_until

KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
WORKER_URL = "http://127.0.0.1:8000/api/v1/internal/video-worker"
# Polls every few milliseconds and a first poll right after submit: the fakes count polls.
FAST = WorkerTiming(
    schedule=PollSchedule(min_interval=3.0, max_interval=30.0), speedup=2000.0, deadline=1e9
)


@dataclass
class Published:
    message: WorkMessage
    delay: float
    message_id: str


@dataclass
class HandQueue:
    """A Queue that only records; the test delivers."""

    published: list[Published] = field(default_factory=list)
    dedup: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    dispatches_in_process: ClassVar[bool] = False

    def describe(self) -> str:
        return "hand queue (test)"

    async def health(self) -> None:
        pass

    async def stats(self) -> QueueStats:
        return QueueStats(pending=len(self.published))

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        if message.dedup_id in self.dedup:
            return self.dedup[message.dedup_id]
        message_id = f"msg_{next(self._ids)}"
        self.dedup[message.dedup_id] = message_id
        self.published.append(Published(message, delay, message_id))
        return message_id

    async def cancel(self, message_id: str) -> None:
        pass

    async def dead_letters(self) -> list[DeadLetter]:
        return []

    async def retry_dead(self, dead_id: str) -> bool:
        return False

    async def drop_dead(self, dead_id: str) -> bool:
        return False

    def pending(self) -> list[Published]:
        return list(self.published)

    def take(self) -> Published:
        return self.published.pop(0)


def delivery(message: WorkMessage, key: str = KEY, retried: int = 0) -> Delivery:
    body = message.to_bytes()
    return Delivery(
        body,
        {
            "Upstash-Signature": signing.sign(body, key, WORKER_URL),
            "Upstash-Message-Id": "msg_test",
            "Upstash-Retried": str(retried),
        },
    )


@dataclass
class Engine:
    store: SqliteStore
    queue: HandQueue
    worker: StepWorker
    service: TaskService

    async def submit(self, prompt: str = "a fox in the snow", **fields: object) -> Task:
        return await self.service.submit(VideoRequest.parse({"prompt": prompt, **fields}))

    async def submitted_with_first_poll(self) -> tuple[Task, WorkMessage]:
        """A task whose submit step ran, and the first poll it published (not delivered yet)."""
        task = await self.submit()
        await self.deliver(self.queue.take().message)
        return task, self.queue.take().message

    async def deliver(self, message: WorkMessage, times: int = 1) -> list[DeliveryResult]:
        return [await self.worker.handle(delivery(message)) for _ in range(times)]

    async def drain(self, limit: int = 200) -> int:
        """Deliver everything published, in order, until nothing is left; returns how many."""
        count = 0
        while self.queue.published and count < limit:
            published = self.queue.take()
            result = await self.worker.handle(delivery(published.message))
            if not result.ok and not result.non_retryable:
                self.queue.published.append(published)  # redeliver later, as a queue would
            count += 1
        return count

    async def task(self, task_id: str) -> Task:
        task = await self.store.get(task_id)
        assert task is not None
        return task

    async def wait_status(self, task_id: str, status: TaskStatus, timeout: float = TIMEOUT) -> Task:
        """The task, once it has reached `status`."""

        seen: list[Task] = []

        async def reached() -> bool:
            seen.append(await self.task(task_id))
            return seen[-1].status is status

        await wait_until(reached, f"task {task_id} to be {status}", timeout, interval=0.01)
        return seen[-1]


async def open_engine(path: Path, upstream: Upstream, timing: WorkerTiming = FAST) -> Engine:
    store = SqliteStore(path)
    await store.open()
    await upstream.open()
    queue = HandQueue()
    keys = SigningKeys(KEY, NEXT_KEY, WORKER_URL)
    worker = StepWorker(store, queue, {upstream.provider: upstream}, keys, timing)
    return Engine(store, queue, worker, TaskService(store, queue))
