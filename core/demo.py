"""Varied sample requests, so a new user sees the queue move at once."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from core.models import VideoRequest
from core.upstream import DEFAULT_PROVIDER, provider_for

if TYPE_CHECKING:
    from core.models import Task
    from core.service import TaskService

_PROMPTS = (
    "A red fox trotting through fresh snow at dawn, tracking shot",
    "Timelapse of a city skyline as storm clouds roll in, cinematic",
    "A paper boat drifting down a rain-soaked street, macro lens",
    "An astronaut tending a tomato plant inside a space station",
    "Waves crashing on black volcanic sand, slow motion, golden hour",
    "A barista pouring latte art in a cosy cafe, shallow depth of field",
    "Hot air balloons rising over Cappadocia at sunrise, drone shot",
    "A robot learning to paint watercolours in a sunlit studio",
    "Neon-lit night market in the rain, handheld camera",
    "A hummingbird feeding from a flower, 240 fps slow motion",
)


def demo_requests(count: int, provider: str = DEFAULT_PROVIDER) -> list[VideoRequest]:
    """`count` valid requests mixing prompts with the provider's sample shapes."""
    shapes = provider_for(provider).sample_requests()
    pairs = zip(itertools.cycle(_PROMPTS), itertools.cycle(shapes), strict=False)
    return [
        VideoRequest(prompt=prompt, provider=provider, **shape)
        for prompt, shape in itertools.islice(pairs, count)
    ]


async def seed_demo(service: TaskService, count: int, *, actor: str = "demo") -> list[Task]:
    """Submit `count` demo requests through the service; return the stored tasks."""
    return [await service.submit(request, actor=actor) for request in demo_requests(count)]
