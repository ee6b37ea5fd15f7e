"""A T8Star double over real HTTP: the documented submit/status API, scriptable jobs and faults.

`FakeT8Star` is what the unmodified `T8StarUpstream` (httpx) talks to on loopback; `JobScript`
says how a job unfolds, `Fault` how the next calls misbehave; it calls a submit's `notify_hook`
when the job ends (`hooks.py`).
"""

from tests.fakes.t8star.jobs import DEFAULT_KEY, RAW_BODY_MARKER, Fault, JobScript, Recorded
from tests.fakes.t8star.server import FakeT8Star

__all__ = ["DEFAULT_KEY", "RAW_BODY_MARKER", "Fault", "FakeT8Star", "JobScript", "Recorded"]
