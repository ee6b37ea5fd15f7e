"""The T8Star contract: which requests it accepts, how long its jobs take, what its statuses say.

Both the real client and the simulator speak it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.models import InvalidRequestRule, VideoRequest
from core.upstream import Estimate

MODELS = ("sora-2", "sora-2-pro")
PRO_MODEL = "sora-2-pro"
ASPECT_RATIOS = ("16:9", "9:16")
DURATIONS = (10, 15, 25)
PRO_ONLY_DURATION = 25

# Status words of the status endpoint.
SUBMITTED = "SUBMITTED"
NOT_START = "NOT_START"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
PENDING_STATUSES = frozenset({NOT_START, SUBMITTED, "QUEUED"})

# (low, typical, high) seconds. 10 s videos take 1-3 minutes, 15 s about two minutes more,
# 25 s (pro only) longer still; hd adds about eight minutes.
_TIMINGS = {10: (60.0, 120.0, 180.0), 15: (180.0, 240.0, 300.0), 25: (300.0, 420.0, 540.0)}
_HD_EXTRA = (420.0, 480.0, 540.0)

_SAMPLES: tuple[dict[str, Any], ...] = (
    {"model": "sora-2", "duration": 10, "aspect_ratio": "16:9"},
    {"model": "sora-2", "duration": 15, "aspect_ratio": "9:16"},
    {"model": "sora-2-pro", "duration": 10, "aspect_ratio": "16:9", "hd": True},
    {"model": "sora-2", "duration": 10, "aspect_ratio": "9:16"},
    {"model": "sora-2-pro", "duration": 25, "aspect_ratio": "16:9"},
    {"model": "sora-2-pro", "duration": 15, "aspect_ratio": "16:9"},
)


def one_of(values: Sequence[object]) -> str:
    """`'a', 'b' or 'c'`: the choices the way a refusal lists them."""
    quoted = [repr(value) for value in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


class T8StarProvider:
    """The rules and timings of T8Star's Sora 2 "unified format" API."""

    name = "t8star"
    flow_control_key = "t8star"
    submitted_status = SUBMITTED
    defaults: Mapping[str, Any] = {"model": "sora-2", "duration": 10, "aspect_ratio": "16:9"}
    choices: Mapping[str, Sequence[Any]] = {
        "model": MODELS,
        "duration": DURATIONS,
        "aspect_ratio": ASPECT_RATIOS,
    }

    def check(self, request: VideoRequest) -> None:
        """Refuse, naming the field, what T8Star would refuse."""
        for field, allowed in self.choices.items():
            if getattr(request, field) not in allowed:
                raise InvalidRequestRule(field, f"must be {one_of(allowed)}")
        if request.model != PRO_MODEL:
            if request.duration == PRO_ONLY_DURATION:
                raise InvalidRequestRule("duration", f"25 s videos need model {PRO_MODEL}")
            if request.hd:
                raise InvalidRequestRule("hd", f"hd needs model {PRO_MODEL}")

    def expected_timing(self, request: VideoRequest) -> Estimate:
        """Published timings: `hd` adds about eight minutes (25 s videos are never hd-slowed)."""
        low, typical, high = _TIMINGS[request.duration]
        if request.hd and request.duration != PRO_ONLY_DURATION:
            extra_low, extra_typical, extra_high = _HD_EXTRA
            low, typical, high = low + extra_low, typical + extra_typical, high + extra_high
        return Estimate(low=low, typical=typical, high=high)

    def sample_requests(self) -> Sequence[Mapping[str, Any]]:
        """A mix of models, durations, aspect ratios and hd."""
        return _SAMPLES


PROVIDER = T8StarProvider()
