"""The simulator: stateless (same id, same story in any process), realistic, and fast on demand."""

from __future__ import annotations

from collections import Counter

import pytest

from core.errors import UpstreamError
from core.models import VideoRequest
from core.upstream import UpstreamState, UpstreamStatus, expected_timing
from core.upstream.simulator import SimId, Simulator, plan_for
from core.upstream.t8star import TASK_ID

T0 = 1_756_693_796.0
TEN = VideoRequest(prompt="a fox")
HD = VideoRequest(prompt="a fox", model="sora-2-pro", duration=15, hd=True)


class Clock:
    """A wall clock tests move by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def timeline(
    sim: Simulator, clock: Clock, upstream_id: str, step: float
) -> list[UpstreamStatus]:
    """Every answer from submit until a final one, one poll per `step` wall seconds."""
    answers: list[UpstreamStatus] = []
    for _ in range(10_000):
        answers.append(await sim.status(upstream_id))
        if answers[-1].state in (UpstreamState.SUCCEEDED, UpstreamState.FAILED):
            return answers
        clock.now += step
    raise AssertionError("the simulated job never finished")


async def test_two_simulators_tell_the_same_story_for_one_id() -> None:
    clock = Clock()
    first = Simulator(speedup=10, failure_rate=0.5, seed=1, clock=clock)
    restarted = Simulator(speedup=10, failure_rate=0.5, seed=99, clock=clock)
    ids = [await first.submit(TEN) for _ in range(20)]
    for _ in range(40):
        clock.now += 1.0
        for upstream_id in ids:
            assert await first.status(upstream_id) == await restarted.status(upstream_id)


async def test_a_job_queues_then_progresses_steadily_then_ends() -> None:
    clock = Clock()
    sim = Simulator(speedup=1, failure_rate=0.0, seed=3, clock=clock)
    upstream_id = await sim.submit(TEN)
    answers = await timeline(sim, clock, upstream_id, step=2.0)
    states = [a.state for a in answers]
    assert states[0] is UpstreamState.PENDING and answers[0].raw_status == "NOT_START"
    assert states[-1] is UpstreamState.SUCCEEDED and answers[-1].raw_status == "SUCCESS"
    assert states == sorted(states, key=list(UpstreamState).index)  # never goes back
    progress = [p for a in answers if isinstance(p := a.progress, int)]
    assert len(progress) == len(answers)  # every answer says how far it got
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(set(progress)) > 20  # it visibly rises, a little at a time
    assert answers[-1].video_url is not None and answers[-1].video_url.startswith("https://")
    # Simulated time stays within the upstream's published range for the job.
    estimate = expected_timing(TEN)
    assert estimate.low <= 2.0 * len(answers) <= estimate.typical * 1.5 + 20


async def test_the_id_carries_the_job_class_and_looks_like_an_upstream_id() -> None:
    sim = Simulator(seed=5, clock=Clock())
    ten, hd = await sim.submit(TEN), await sim.submit(HD)
    assert TASK_ID.match(ten) and TASK_ID.match(hd)
    assert SimId.parse(ten) == SimId(10, False, int(T0 * 1000), SimId.parse(ten).token)  # type: ignore[union-attr]
    hd_id = SimId.parse(hd)
    assert hd_id is not None and (hd_id.duration, hd_id.hd) == (15, True)
    assert plan_for(hd_id, 0.0).run_seconds >= expected_timing(HD).low


async def test_speed_makes_time_run_faster() -> None:
    clock = Clock()
    slow = Simulator(speedup=1, failure_rate=0.3, clock=clock)
    fast = Simulator(speedup=50, failure_rate=0.3, clock=clock)
    assert fast.speedup == 50 and "x50" in fast.describe()
    upstream_id = await slow.submit(TEN)
    for seconds in (1, 4, 30, 70, 120, 200):
        clock.now = T0 + seconds / 50
        fast_answer = await fast.status(upstream_id)
        clock.now = T0 + seconds
        assert fast_answer == await slow.status(upstream_id)


async def test_about_the_configured_share_fails_some_of_them_late() -> None:
    clock = Clock()
    sim = Simulator(speedup=1, failure_rate=0.2, seed=7, clock=clock)
    ids = [await sim.submit(TEN) for _ in range(1000)]
    clock.now += 10_000  # long after every job has ended
    outcomes = Counter([(await sim.status(i)).state for i in ids])
    assert set(outcomes) == {UpstreamState.SUCCEEDED, UpstreamState.FAILED}
    assert 120 <= outcomes[UpstreamState.FAILED] <= 280
    plans = [plan_for(SimId.parse(i), 0.2) for i in ids]  # type: ignore[arg-type]
    late = [p for p in plans if p.fails and p.fail_at >= 0.9]
    assert 0 < len(late) < outcomes[UpstreamState.FAILED]


async def test_a_late_failure_comes_after_ninety_percent_with_a_reason() -> None:
    clock = Clock()
    sim = Simulator(speedup=1, failure_rate=1.0, seed=11, clock=clock)
    for _ in range(200):
        upstream_id = await sim.submit(TEN)
        plan = plan_for(SimId.parse(upstream_id), 1.0)  # type: ignore[arg-type]
        if plan.fail_at >= 0.9:
            break
    else:
        raise AssertionError("no late failure among 200 jobs")
    answers = await timeline(sim, clock, upstream_id, step=1.0)
    assert answers[-1].state is UpstreamState.FAILED and answers[-1].raw_status == "FAILURE"
    assert answers[-1].fail_reason and answers[-1].video_url is None
    assert answers[-2].state is UpstreamState.RUNNING and (answers[-2].progress or 0) >= 90


async def test_no_failures_when_the_rate_is_zero() -> None:
    clock = Clock()
    sim = Simulator(failure_rate=0.0, seed=2, clock=clock)
    ids = [await sim.submit(HD) for _ in range(200)]
    clock.now += 100_000
    assert {(await sim.status(i)).state for i in ids} == {UpstreamState.SUCCEEDED}


async def test_an_unknown_id_is_not_found_for_good() -> None:
    sim = Simulator(clock=Clock())
    for foreign in ("f0aa213c-c09e-4e19-a0e5-c698fe48acf1", "sim-11-1-abcdefabcdef", ""):
        with pytest.raises(UpstreamError) as caught:
            await sim.status(foreign)
        assert (caught.value.http_status, caught.value.transient) == (404, False)


async def test_a_clock_behind_the_submitter_sees_the_job_queued() -> None:
    clock = Clock()
    sim = Simulator(clock=clock)
    upstream_id = await sim.submit(TEN)
    clock.now -= 5  # another worker whose clock is a little behind
    answer = await sim.status(upstream_id)
    assert (answer.state, answer.progress) == (UpstreamState.PENDING, 0)


async def test_transient_trouble_only_when_asked_for() -> None:
    clock = Clock()
    calm = Simulator(clock=clock, seed=1)
    stormy = Simulator(clock=clock, transient_rate=1.0)
    upstream_id = await calm.submit(TEN)
    assert (await calm.status(upstream_id)).state is UpstreamState.PENDING
    with pytest.raises(UpstreamError) as caught:
        await stormy.status(upstream_id)
    assert caught.value.transient and caught.value.http_status == 503


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Simulator(speedup=0)
    with pytest.raises(ValueError):
        Simulator(failure_rate=1.5)
