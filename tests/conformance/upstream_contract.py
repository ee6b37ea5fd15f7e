"""The Upstream conformance suite: what every adapter promises, from submit to a final answer.

An adapter's test module subclasses `UpstreamContract` and provides two fixtures: `upstream`,
an opened adapter, and `driver`, an object shaped like `JobDriver` that makes the adapter's next
job unfold the way a test needs (a script on the T8Star fake, a chosen fate and a moved clock
for the simulator). The suite only calls the port and judges the answers.
"""

from __future__ import annotations

from typing import Literal, Protocol

import pytest

from core.errors import UpstreamError
from core.models import VideoRequest
from core.upstream import Upstream, UpstreamState, provider_for

Point = Literal["fresh", "running", "succeeded", "failed"]
REQUEST = VideoRequest(prompt="a red fox running through snow")


class JobDriver(Protocol):
    """Makes an adapter's jobs unfold as a test needs."""

    async def job(self, upstream: Upstream, point: Point) -> str:
        """Submit a job and bring it to `point`; returns its upstream id."""
        ...

    def trouble_next_poll(self) -> None:
        """Make the next status call fail the way a busy upstream fails (a 503)."""
        ...

    def refuse_next_submit(self) -> bool:
        """Make the next submit be refused for good; False if this adapter never refuses one."""
        ...


class UpstreamContract:
    """Every promise of the Upstream port; subclass it and provide `upstream` and `driver`."""

    def test_it_speaks_a_known_provider_and_says_what_it_is(self, upstream: Upstream) -> None:
        assert provider_for(upstream.provider).name == upstream.provider
        assert upstream.describe().strip()
        assert upstream.speedup > 0

    async def test_submit_returns_a_new_id_each_time(self, upstream: Upstream) -> None:
        first = await upstream.submit(REQUEST)
        second = await upstream.submit(REQUEST)
        assert isinstance(first, str) and first.strip() == first and first
        assert first != second

    async def test_every_sample_request_of_its_provider_is_accepted(
        self, upstream: Upstream
    ) -> None:
        samples = provider_for(upstream.provider).sample_requests()
        for sample in samples:
            request = VideoRequest(prompt="a sample", **sample)
            assert await upstream.submit(request)

    async def test_a_fresh_job_is_pending_without_a_result(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        answer = await upstream.status(await driver.job(upstream, "fresh"))
        assert answer.state is UpstreamState.PENDING
        assert answer.raw_status and answer.progress in (None, 0)
        assert answer.video_url is None and answer.fail_reason is None

    async def test_a_running_job_reports_progress_below_100(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        answer = await upstream.status(await driver.job(upstream, "running"))
        assert answer.state is UpstreamState.RUNNING
        assert answer.progress is not None and 0 < answer.progress < 100
        assert answer.video_url is None

    async def test_a_finished_job_reports_success_with_a_video_url(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        upstream_id = await driver.job(upstream, "succeeded")
        answer = await upstream.status(upstream_id)
        assert answer.state is UpstreamState.SUCCEEDED and answer.progress == 100
        assert answer.video_url is not None and answer.video_url.startswith("https://")
        again = await upstream.status(upstream_id)
        assert (again.state, again.video_url) == (answer.state, answer.video_url)

    async def test_a_failed_job_reports_its_reason_on_one_line(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        answer = await upstream.status(await driver.job(upstream, "failed"))
        assert answer.state is UpstreamState.FAILED and answer.video_url is None
        assert answer.fail_reason and "\n" not in answer.fail_reason
        assert answer.fail_reason == " ".join(answer.fail_reason.split())

    async def test_a_busy_upstream_is_transient_trouble(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        upstream_id = await driver.job(upstream, "running")
        driver.trouble_next_poll()
        with pytest.raises(UpstreamError) as caught:
            await upstream.status(upstream_id)
        assert caught.value.transient and caught.value.http_status == 503

    async def test_a_refused_submit_is_permanent(
        self, upstream: Upstream, driver: JobDriver
    ) -> None:
        if not driver.refuse_next_submit():
            pytest.skip("this adapter never refuses a submit")
        with pytest.raises(UpstreamError) as caught:
            await upstream.submit(REQUEST)
        assert not caught.value.transient and caught.value.message

    async def test_an_id_it_never_issued_is_unknown(self, upstream: Upstream) -> None:
        with pytest.raises(UpstreamError) as caught:
            await upstream.status("task_never-issued-0001")
        assert caught.value.http_status == 404

    @pytest.mark.parametrize("upstream_id", ["../../etc/passwd", "x", "two words"])
    async def test_an_id_not_of_its_own_form_is_refused_for_good(
        self, upstream: Upstream, upstream_id: str
    ) -> None:
        with pytest.raises(UpstreamError) as caught:
            await upstream.status(upstream_id)
        assert not caught.value.transient
