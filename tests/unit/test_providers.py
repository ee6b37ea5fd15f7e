"""The provider registry: requests follow their provider's rules, tasks its adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec.structs import replace

from core.demo import demo_requests
from core.errors import InvalidRequest
from core.models import Task, TaskStatus, VideoRequest, WorkMessage
from core.upstream import DEFAULT_PROVIDER, provider_for
from core.upstream.simulator import Simulator
from core.upstream.t8star import T8StarUpstream
from core.upstream.t8star_rules import PROVIDER
from tests.engine import open_engine


def test_the_registry_finds_a_provider_by_name_and_names_the_known_ones() -> None:
    assert provider_for(DEFAULT_PROVIDER) is PROVIDER
    with pytest.raises(InvalidRequest) as caught:
        provider_for("acme")
    assert caught.value.field == "provider" and "'t8star'" in caught.value.message


def test_a_request_for_an_unknown_provider_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        VideoRequest.parse({"prompt": "x", "provider": "acme"})
    assert caught.value.field == "provider"
    assert caught.value.message == "provider: must be 't8star'"


def test_fields_left_out_take_the_provider_defaults() -> None:
    request = VideoRequest(prompt="a fox")
    assert request.provider == PROVIDER.name
    chosen = {name: getattr(request, name) for name in PROVIDER.defaults}
    assert chosen == dict(PROVIDER.defaults)
    assert Task.new(request).provider == PROVIDER.name


def test_both_adapters_speak_the_provider_they_declare() -> None:
    assert Simulator().provider == T8StarUpstream("https://x.invalid", "k").provider == "t8star"


def test_demo_requests_cycle_through_every_sample_shape() -> None:
    shapes = PROVIDER.sample_requests()
    requests = demo_requests(2 * len(shapes))
    seen = {(r.model, r.duration, r.aspect_ratio, r.hd) for r in requests}
    wanted = {(s["model"], s["duration"], s["aspect_ratio"], s.get("hd", False)) for s in shapes}
    assert seen == wanted


async def test_a_task_of_a_provider_without_an_adapter_fails_with_the_reason(
    tmp_path: Path,
) -> None:
    engine = await open_engine(tmp_path / "p.db", Simulator())
    try:
        task = replace(Task.new(VideoRequest(prompt="a fox")), provider="acme")
        await engine.store.insert(task)
        await engine.deliver(WorkMessage(task_id=task.id, attempt=1, step="submit", seq=1))
        done = await engine.task(task.id)
        assert done.status is TaskStatus.FAILED
        assert done.error_message == "no upstream here speaks provider acme"
    finally:
        await engine.store.close()
