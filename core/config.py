"""Settings from the environment (and `.env`), and the choice of backends they imply."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from core.errors import FieldRefused
from core.event_loop import CHOICES as LOOP_CHOICES
from core.urls import is_private_url

DEFAULT_T8STAR_URL = "https://ai.t8star.cn"
WORKER_PATH = "/api/v1/internal/video-worker"
RECONCILE_PATH = "/api/v1/internal/reconcile"
HOOK_PATH = "/api/v1/internal/t8star-hook"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
# The upstream's "busy, come back later" family, in both languages it answers in.
DEFAULT_AUTO_RETRY_REASONS = r"overloaded|try again later|rate limit|busy|稍后|繁忙|过载"


def default_db_path() -> Path:
    from platformdirs import user_data_dir  # only when VIDEOQ_DB is unset

    return Path(user_data_dir("videoq", appauthor=False)) / "videoq.db"


def step_lease(step_timeout: float) -> float:
    """How long a claim on a step lasts: its timeout and a 5 s margin."""
    return step_timeout + 5.0


def _env(name: str) -> dict[str, str]:
    return {"env": name}


class Secret:
    """A secret setting: its value only through `get_secret_value`, never in a repr or a str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """The environment over the `.env` file, names lower-cased (names are case-insensitive)."""
    found: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values  # only when there is a file to read

        found.update((k.lower(), v) for k, v in dotenv_values(env_file).items() if v is not None)
    found.update((k.lower(), v) for k, v in os.environ.items())
    return found


@dataclass(init=False)
class Settings:
    """Every knob of videoq; each field's docstring is its documentation.

    `Settings()` reads the environment and `.env` (the environment wins; keyword arguments win
    over both) and checks the values with msgspec (text such as "8" becomes 8); a bad one raises
    msgspec.ValidationError, which `settings_problem` words naming the variable. Not pydantic:
    importing it and building the schema cost every command more than `import httpx` takes
    (docs/benchmarks.md).
    """

    def __init__(self, _env_file: str | Path | None = ".env", **values: Any) -> None:
        # A misspelt keyword would otherwise be ignored, and its default silently used.
        unknown = sorted(set(values) - _KNOWN_NAMES)
        if unknown:
            raise TypeError(f"Settings() got unknown settings: {', '.join(unknown)}")
        found = read_environment(_env_file)
        given = {name: found[env] for name, env in _LOWER_ENV_NAMES.items() if env in found}
        given |= {_FIELD_OF[name.lower()]: value for name, value in values.items()}
        self._load(given)

    def _load(self, given: dict[str, Any]) -> None:
        checked = msgspec.convert(_booleans(given), Settings, strict=False, dec_hook=_dec_hook)
        vars(self).update(vars(checked))
        # Which settings were given (even at their default): a public URL set enables hooks.
        self._given = frozenset(given)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (by field name), checked like any other value."""
        unknown = sorted(set(changes) - set(ENV_NAMES))
        if unknown:
            raise TypeError(f"Settings.replace() got unknown settings: {', '.join(unknown)}")
        copied = copy.copy(self)
        copied._load({name: getattr(self, name) for name in self._given} | changes)
        return copied

    def __post_init__(self) -> None:
        # msgspec calls this once it has set the fields; `validate_default` as before: the
        # defaults are held to the same rules.
        for name in ("store", "queue", "upstream"):
            setattr(self, name, _backend_name(getattr(self, name)))
        for name in ("t8star_base_url", "public_url"):
            setattr(self, name, _http_url(name, getattr(self, name)))
        _a_pattern(self.auto_retry_reasons)
        self.log_level = _known_level(self.log_level)
        self.event_loop = _known_loop(_backend_name(self.event_loop))

    db_path: Path = field(default_factory=default_db_path, metadata=_env("VIDEOQ_DB"))
    """SQLite file of the embedded store and queue (default: videoq.db in the user data dir)."""

    store: str | None = field(default=None, metadata=_env("VIDEOQ_STORE"))
    """Task store: sqlite or supabase (default: supabase when SUPABASE_URL and
    SUPABASE_SERVICE_ROLE_KEY are set, else sqlite)."""

    queue: str | None = field(default=None, metadata=_env("VIDEOQ_QUEUE"))
    """Queue: local or qstash (default: qstash when QSTASH_TOKEN is set, else local)."""

    upstream: str | None = field(default=None, metadata=_env("VIDEOQ_UPSTREAM"))
    """Upstream adapter: t8star or simulator (default: t8star when T8STAR_API_KEY is set, else
    simulator)."""

    t8star_api_key: Secret | None = field(default=None, metadata=_env("T8STAR_API_KEY"))
    """T8Star API key; without it the local simulator stands in for the upstream."""

    t8star_base_url: str = field(default=DEFAULT_T8STAR_URL, metadata=_env("T8STAR_BASE_URL"))
    """Base URL of the T8Star API."""

    sim_speedup: Annotated[float, Meta(gt=0, le=100_000)] = field(
        default=1.0, metadata=_env("VIDEOQ_SIM_SPEED")
    )
    """How many times faster than real time the simulator's clock runs."""

    sim_failure_rate: Annotated[float, Meta(ge=0, le=1)] = field(
        default=0.1, metadata=_env("VIDEOQ_SIM_FAILURE_RATE")
    )
    """Share of simulated tasks that fail with an upstream-style reason."""

    concurrency: Annotated[int, Meta(ge=1, le=512)] = field(
        default=8, metadata=_env("VIDEOQ_CONCURRENCY")
    )
    """Worker steps run at once by one worker process."""

    poll_min_interval: Annotated[float, Meta(gt=0)] = field(
        default=3.0, metadata=_env("VIDEOQ_POLL_MIN_INTERVAL")
    )
    """Shortest wait between two status polls of one task, in seconds."""

    poll_max_interval: Annotated[float, Meta(gt=0)] = field(
        default=30.0, metadata=_env("VIDEOQ_POLL_MAX_INTERVAL")
    )
    """Longest wait between two status polls of one task, in seconds."""

    step_timeout: Annotated[float, Meta(gt=0, le=600)] = field(
        default=30.0, metadata=_env("VIDEOQ_STEP_TIMEOUT")
    )
    """Longest one worker step may take (an upstream call included) before it is abandoned."""

    task_deadline: Annotated[float, Meta(gt=0)] = field(
        default=2700.0, metadata=_env("VIDEOQ_TASK_DEADLINE")
    )
    """Seconds after which a task still queued or running fails as "timed out" (counted on the
    upstream's clock: with the simulator, its speed shortens the deadline too)."""

    reconcile_interval: Annotated[float, Meta(gt=0)] = field(
        default=10.0, metadata=_env("VIDEOQ_RECONCILE_INTERVAL")
    )
    """Seconds between two passes of the reconciler, which re-publishes lost steps."""

    speedup: Annotated[float, Meta(gt=0, le=100_000)] = field(
        default=1.0, metadata=_env("VIDEOQ_SPEEDUP")
    )
    """How many times faster the worker's poll schedule, deadlines and reconciler run (tests and
    demos against a fast upstream fake; keep 1 in production, use VIDEOQ_SIM_SPEED with the
    simulator)."""

    signature_leeway: Annotated[float, Meta(ge=0, le=60)] = field(
        default=5.0, metadata=_env("VIDEOQ_SIGNATURE_LEEWAY")
    )
    """Clock leeway in seconds when verifying delivery signatures."""

    public_url: str = field(default="http://127.0.0.1:8000", metadata=_env("VIDEOQ_PUBLIC_URL"))
    """Public base URL of `videoq serve`; QStash delivers to it plus the worker path."""

    qstash_token: Secret | None = field(default=None, metadata=_env("QSTASH_TOKEN"))
    """QStash token; when set, messages go through QStash instead of the local queue."""

    qstash_url: str | None = field(default=None, metadata=_env("QSTASH_URL"))
    """QStash API base URL (e.g. a local QStash dev server)."""

    qstash_current_signing_key: Secret | None = field(
        default=None, metadata=_env("QSTASH_CURRENT_SIGNING_KEY")
    )
    """Key QStash signs deliveries with now."""

    qstash_next_signing_key: Secret | None = field(
        default=None, metadata=_env("QSTASH_NEXT_SIGNING_KEY")
    )
    """Key QStash will sign with after the next rotation."""

    qstash_daily_budget: Annotated[int, Meta(ge=1)] | None = field(
        default=None, metadata=_env("VIDEOQ_QSTASH_DAILY_BUDGET")
    )
    """QStash messages a UTC day may use, published and delivered (unset: no budget); from 80 %
    polls wait longer, at the budget steps wait for the next day or run on a long-running host."""

    qstash_fallback_after: Annotated[float, Meta(gt=0)] = field(
        default=60.0, metadata=_env("VIDEOQ_QSTASH_FALLBACK_AFTER")
    )
    """Seconds QStash may refuse publishes before a long-running host (`videoq serve`, `videoq
    --no-ui`) runs due steps itself; it hands them back once a publish succeeds again."""

    supabase_url: str | None = field(default=None, metadata=_env("SUPABASE_URL"))
    """Supabase project URL; with the service-role key, tasks live in Supabase."""

    supabase_service_role_key: Secret | None = field(
        default=None, metadata=_env("SUPABASE_SERVICE_ROLE_KEY")
    )
    """Supabase service-role key (server side only)."""

    supabase_jwt_secret: Secret | None = field(default=None, metadata=_env("SUPABASE_JWT_SECRET"))
    """Secret that verifies users' Supabase JWTs (HS256) for the task API."""

    supabase_jwks_url: str | None = field(default=None, metadata=_env("SUPABASE_JWKS_URL"))
    """JWKS that verifies users' asymmetric Supabase JWTs (default: derived from SUPABASE_URL)."""

    api_submits_per_minute: Annotated[int, Meta(ge=1)] = field(
        default=30, metadata=_env("VIDEOQ_API_SUBMITS_PER_MINUTE")
    )
    """Tasks one signed-in user may submit through the task API in any minute (not the CLI)."""

    api_active_tasks: Annotated[int, Meta(ge=1)] = field(
        default=100, metadata=_env("VIDEOQ_API_ACTIVE_TASKS")
    )
    """Queued plus running tasks one signed-in user may have at once through the task API."""

    api_image_bytes: Annotated[int, Meta(ge=1)] = field(
        default=16 * 1024 * 1024, metadata=_env("VIDEOQ_API_IMAGE_BYTES")
    )
    """Characters of image URLs and data URLs one task API request may carry in total."""

    cors_origins: str = field(default="", metadata=_env("VIDEOQ_CORS_ORIGINS"))
    """Comma-separated browser origins allowed to call the task API (empty: none)."""

    secret_key: Secret | None = field(default=None, metadata=_env("VIDEOQ_SECRET_KEY"))
    """Server secret that encrypts users' own upstream keys (BYOK) at rest and signs the
    notify-hook tokens."""

    secret_key_previous: Secret | None = field(
        default=None, metadata=_env("VIDEOQ_SECRET_KEY_PREVIOUS")
    )
    """Comma-separated earlier server secrets that still decrypt stored keys (rotation)."""

    @property
    def previous_secret_keys(self) -> list[str]:
        """VIDEOQ_SECRET_KEY_PREVIOUS as a list, empty entries dropped."""
        if self.secret_key_previous is None:
            return []
        entries = self.secret_key_previous.get_secret_value().split(",")
        return [entry.strip() for entry in entries if entry.strip()]

    upstream_hooks: bool = field(default=True, metadata=_env("VIDEOQ_UPSTREAM_HOOKS"))
    """Ask T8Star to call back (notify_hook) when a job changes, so scheduled polls can be rare;
    needs VIDEOQ_PUBLIC_URL and VIDEOQ_SECRET_KEY set."""

    auto_retry_max: Annotated[int, Meta(ge=0, le=10)] = field(
        default=0, metadata=_env("VIDEOQ_AUTO_RETRY_MAX")
    )
    """Automatic retries a task may get when it fails for a transient reason (0: none, the
    default). Each one is a new upstream job, billed like any other."""

    auto_retry_reasons: str = field(
        default=DEFAULT_AUTO_RETRY_REASONS, metadata=_env("VIDEOQ_AUTO_RETRY_REASONS")
    )
    """Regular expression (case-insensitive, searched in the failure reason) of the reasons an
    automatic retry is for."""

    auto_retry_backoff: Annotated[float, Meta(gt=0, le=86_400)] = field(
        default=60.0, metadata=_env("VIDEOQ_AUTO_RETRY_BACKOFF")
    )
    """Seconds before the first automatic retry of a task; each next one waits twice as long."""

    log_level: str = field(default="INFO", metadata=_env("VIDEOQ_LOG_LEVEL"))
    """Log level of the command line: DEBUG, INFO, WARNING or ERROR."""

    event_loop: str | None = field(default=None, metadata=_env("VIDEOQ_EVENT_LOOP"))
    """Event loop of `videoq --no-ui`, `videoq serve` and the task commands: uvloop or asyncio
    (default: uvloop where it is installed, else asyncio). The dashboard runs on asyncio."""

    @property
    def worker_url(self) -> str:
        """The URL deliveries are addressed (and signed) to."""
        return self.public_url + WORKER_PATH

    @property
    def reconcile_url(self) -> str:
        """The URL a QStash schedule calls (and signs for) to run one reconciler pass."""
        return self.public_url + RECONCILE_PATH

    @property
    def hooks_enabled(self) -> bool:
        """Whether submits carry a notify hook: allowed, a public URL and a secret set, and the
        upstream able to reach that URL."""
        public_url_set = "public_url" in self._given
        allowed = self.upstream_hooks and public_url_set and self.secret_key is not None
        return allowed and self.upstream_reaches_public_url

    @property
    def upstream_reaches_public_url(self) -> bool:
        """False when VIDEOQ_PUBLIC_URL is private and T8Star is not (it could never call back)."""
        return not is_private_url(self.public_url) or is_private_url(self.t8star_base_url)

    @property
    def jwks_url(self) -> str | None:
        """Where the project's public JWT keys are published, if known."""
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return self.supabase_url.rstrip("/") + JWKS_PATH
        return None

    @property
    def step_lease(self) -> float:
        """How long a claim on a step (a submit claim, a local queue's delivery lease, a graceful
        stop's wait) lasts: the step timeout and a margin, so no claim ends while its step may
        still be running."""
        return step_lease(self.step_timeout)

    @property
    def store_backend(self) -> str:
        """The task store chosen: VIDEOQ_STORE, else what the keys present imply."""
        if self.store:
            return self.store
        return "supabase" if self.supabase_url and self.supabase_service_role_key else "sqlite"

    @property
    def queue_backend(self) -> str:
        """The queue chosen: VIDEOQ_QUEUE, else what the keys present imply."""
        return self.queue or ("qstash" if self.qstash_token is not None else "local")

    @property
    def upstream_backend(self) -> str:
        """The upstream adapter chosen: VIDEOQ_UPSTREAM, else what the keys present imply."""
        return self.upstream or ("t8star" if self.t8star_api_key is not None else "simulator")

    @property
    def uses_simulator(self) -> bool:
        return self.upstream_backend == "simulator"

    @property
    def uses_qstash(self) -> bool:
        return self.queue_backend == "qstash"

    @property
    def uses_supabase(self) -> bool:
        return self.store_backend == "supabase"


def _a_pattern(value: str) -> None:
    if value == DEFAULT_AUTO_RETRY_REASONS:
        return  # known good; compiling it would cost every command's start-up
    try:
        re.compile(value)
    except re.error as exc:
        raise FieldRefused("auto_retry_reasons", f"is not a regular expression: {exc}") from None


def _known_level(value: str) -> str:
    value = value.upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise FieldRefused("log_level", "must be DEBUG, INFO, WARNING or ERROR")
    return value


def _known_loop(value: str | None) -> str | None:
    if value is not None and value not in LOOP_CHOICES:
        raise FieldRefused("event_loop", f"must be {' or '.join(LOOP_CHOICES)}")
    return value


def _backend_name(value: str | None) -> str | None:
    # An empty variable means "not chosen": the keys present decide, as when it is unset.
    return value.strip().lower() or None if value is not None else None


def _http_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise FieldRefused(name, "must start with http:// or https://")
    return value.rstrip("/")


# The words pydantic took for true and false, which the documentation and deployments use.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _booleans(given: dict[str, Any]) -> dict[str, Any]:
    """`given` with the on/off words of boolean settings as booleans (msgspec takes true/false)."""
    words = {name: given[name] for name in _BOOLEANS if isinstance(given.get(name), str)}
    for name, word in words.items():
        lowered = word.strip().lower()
        if lowered in _TRUE | _FALSE:
            words[name] = lowered in _TRUE
    return given | words


def _dec_hook(kind: type, value: Any) -> Any:
    """Paths and secrets from text (msgspec knows neither type)."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    if kind is Secret and isinstance(value, str | Secret):
        return value if isinstance(value, Secret) else Secret(value)
    raise TypeError("must be text")


# Each field's variable: its metadata is its one home.
ENV_NAMES: dict[str, str] = {info.name: info.metadata["env"] for info in fields(Settings)}
_LOWER_ENV_NAMES = {name: env.lower() for name, env in ENV_NAMES.items()}
# What a keyword argument may be called: the field's name or its variable, in either case.
_FIELD_OF = {
    **{name: name for name in ENV_NAMES},
    **{env: name for name, env in _LOWER_ENV_NAMES.items()},
}
_KNOWN_NAMES = {*_FIELD_OF, *(name.upper() for name in _FIELD_OF)}
_BOOLEANS = tuple(info.name for info in fields(Settings) if info.type == "bool")


def settings_problem(exc: msgspec.ValidationError) -> str:
    """The first invalid setting in `exc`, named by its environment variable."""
    from core.messages import problem

    field_name, reason = problem(exc)
    return f"invalid setting {ENV_NAMES.get(field_name, field_name)}: {reason}"
