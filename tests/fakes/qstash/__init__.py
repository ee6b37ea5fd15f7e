"""A QStash double over real HTTP: the publish/messages/DLQ/keys API, signed deliveries, hooks.

`FakeQStash` is what the unmodified `qstash` SDK publishes to; `DeliveryReceiver` is a loopback
worker endpoint that verifies each delivery and hands it to a handler as a `core.queue.Delivery`.
"""

from tests.fakes.qstash.engine import Attempt
from tests.fakes.qstash.receiver import DeliveryReceiver, Received, answer_headers
from tests.fakes.qstash.server import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
    FakeQStash,
)

__all__ = [
    "DEV_CURRENT_SIGNING_KEY",
    "DEV_NEXT_SIGNING_KEY",
    "DEV_TOKEN",
    "Attempt",
    "DeliveryReceiver",
    "FakeQStash",
    "Received",
    "answer_headers",
]
