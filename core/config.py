"""Settings from the environment (and `.env`), and the choice of backends they imply."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_T8STAR_URL = "https://ai.t8star.cn"
WORKER_PATH = "/api/v1/internal/video-worker"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"


def default_db_path() -> Path:
    return Path(user_data_dir("videoq", appauthor=False)) / "videoq.db"


def step_lease(step_timeout: float) -> float:
    """How long a claim on a step lasts: its timeout and a 5 s margin."""
    return step_timeout + 5.0


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Every knob of videoq; each field's docstring is its documentation."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    db_path: Path = Field(default_factory=default_db_path, validation_alias=_env("VIDEOQ_DB"))
    """SQLite file of the embedded store and queue (default: videoq.db in the user data dir)."""

    store: str | None = Field(None, validation_alias=_env("VIDEOQ_STORE"))
    """Task store: sqlite or supabase (default: supabase when SUPABASE_URL and
    SUPABASE_SERVICE_ROLE_KEY are set, else sqlite)."""

    queue: str | None = Field(None, validation_alias=_env("VIDEOQ_QUEUE"))
    """Queue: local or qstash (default: qstash when QSTASH_TOKEN is set, else local)."""

    upstream: str | None = Field(None, validation_alias=_env("VIDEOQ_UPSTREAM"))
    """Upstream adapter: t8star or simulator (default: t8star when T8STAR_API_KEY is set, else
    simulator)."""

    t8star_api_key: SecretStr | None = Field(None, validation_alias=_env("T8STAR_API_KEY"))
    """T8Star API key; without it the local simulator stands in for the upstream."""

    t8star_base_url: str = Field(DEFAULT_T8STAR_URL, validation_alias=_env("T8STAR_BASE_URL"))
    """Base URL of the T8Star API."""

    sim_speedup: float = Field(1.0, gt=0, le=100_000, validation_alias=_env("VIDEOQ_SIM_SPEED"))
    """How many times faster than real time the simulator's clock runs."""

    sim_failure_rate: float = Field(
        0.1, ge=0, le=1, validation_alias=_env("VIDEOQ_SIM_FAILURE_RATE")
    )
    """Share of simulated tasks that fail with an upstream-style reason."""

    concurrency: int = Field(8, ge=1, le=512, validation_alias=_env("VIDEOQ_CONCURRENCY"))
    """Worker steps run at once by one worker process."""

    poll_min_interval: float = Field(3.0, gt=0, validation_alias=_env("VIDEOQ_POLL_MIN_INTERVAL"))
    """Shortest wait between two status polls of one task, in seconds."""

    poll_max_interval: float = Field(30.0, gt=0, validation_alias=_env("VIDEOQ_POLL_MAX_INTERVAL"))
    """Longest wait between two status polls of one task, in seconds."""

    step_timeout: float = Field(30.0, gt=0, le=600, validation_alias=_env("VIDEOQ_STEP_TIMEOUT"))
    """Longest one worker step may take (an upstream call included) before it is abandoned."""

    task_deadline: float = Field(2700.0, gt=0, validation_alias=_env("VIDEOQ_TASK_DEADLINE"))
    """Seconds after which a task still queued or running fails as "timed out" (counted on the
    upstream's clock: with the simulator, its speed shortens the deadline too)."""

    reconcile_interval: float = Field(
        10.0, gt=0, validation_alias=_env("VIDEOQ_RECONCILE_INTERVAL")
    )
    """Seconds between two passes of the reconciler, which re-publishes lost steps."""

    speedup: float = Field(1.0, gt=0, le=100_000, validation_alias=_env("VIDEOQ_SPEEDUP"))
    """How many times faster the worker's poll schedule, deadlines and reconciler run (tests and
    demos against a fast upstream fake; keep 1 in production, use VIDEOQ_SIM_SPEED with the
    simulator)."""

    signature_leeway: float = Field(
        5.0, ge=0, le=60, validation_alias=_env("VIDEOQ_SIGNATURE_LEEWAY")
    )
    """Clock leeway in seconds when verifying delivery signatures."""

    public_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("VIDEOQ_PUBLIC_URL"))
    """Public base URL of `videoq serve`; QStash delivers to it plus the worker path."""

    qstash_token: SecretStr | None = Field(None, validation_alias=_env("QSTASH_TOKEN"))
    """QStash token; when set, messages go through QStash instead of the local queue."""

    qstash_url: str | None = Field(None, validation_alias=_env("QSTASH_URL"))
    """QStash API base URL (e.g. a local QStash dev server)."""

    qstash_current_signing_key: SecretStr | None = Field(
        None, validation_alias=_env("QSTASH_CURRENT_SIGNING_KEY")
    )
    """Key QStash signs deliveries with now."""

    qstash_next_signing_key: SecretStr | None = Field(
        None, validation_alias=_env("QSTASH_NEXT_SIGNING_KEY")
    )
    """Key QStash will sign with after the next rotation."""

    qstash_daily_budget: int | None = Field(
        None, ge=1, validation_alias=_env("VIDEOQ_QSTASH_DAILY_BUDGET")
    )
    """QStash messages a UTC day may use, published and delivered (unset: no budget); from 80 %
    polls wait longer, at the budget steps wait for the next day or run on a long-running host."""

    qstash_fallback_after: float = Field(
        60.0, gt=0, validation_alias=_env("VIDEOQ_QSTASH_FALLBACK_AFTER")
    )
    """Seconds QStash may refuse publishes before a long-running host (`videoq serve`, `videoq
    --no-ui`) runs due steps itself; it hands them back once a publish succeeds again."""

    supabase_url: str | None = Field(None, validation_alias=_env("SUPABASE_URL"))
    """Supabase project URL; with the service-role key, tasks live in Supabase."""

    supabase_service_role_key: SecretStr | None = Field(
        None, validation_alias=_env("SUPABASE_SERVICE_ROLE_KEY")
    )
    """Supabase service-role key (server side only)."""

    supabase_jwt_secret: SecretStr | None = Field(
        None, validation_alias=_env("SUPABASE_JWT_SECRET")
    )
    """Secret that verifies users' Supabase JWTs (HS256) for the task API."""

    supabase_jwks_url: str | None = Field(None, validation_alias=_env("SUPABASE_JWKS_URL"))
    """JWKS that verifies users' asymmetric Supabase JWTs (default: derived from SUPABASE_URL)."""

    api_submits_per_minute: int = Field(
        30, ge=1, validation_alias=_env("VIDEOQ_API_SUBMITS_PER_MINUTE")
    )
    """Tasks one signed-in user may submit through the task API in any minute (not the CLI)."""

    api_active_tasks: int = Field(100, ge=1, validation_alias=_env("VIDEOQ_API_ACTIVE_TASKS"))
    """Queued plus running tasks one signed-in user may have at once through the task API."""

    api_image_bytes: int = Field(
        16 * 1024 * 1024, ge=1, validation_alias=_env("VIDEOQ_API_IMAGE_BYTES")
    )
    """Characters of image URLs and data URLs one task API request may carry in total."""

    cors_origins: str = Field("", validation_alias=_env("VIDEOQ_CORS_ORIGINS"))
    """Comma-separated browser origins allowed to call the task API (empty: none)."""

    secret_key: SecretStr | None = Field(None, validation_alias=_env("VIDEOQ_SECRET_KEY"))
    """Server secret that encrypts users' own upstream keys (BYOK) at rest."""

    secret_key_previous: SecretStr | None = Field(
        None, validation_alias=_env("VIDEOQ_SECRET_KEY_PREVIOUS")
    )
    """Comma-separated earlier server secrets that still decrypt stored keys (rotation)."""

    @property
    def previous_secret_keys(self) -> list[str]:
        """VIDEOQ_SECRET_KEY_PREVIOUS as a list, empty entries dropped."""
        if self.secret_key_previous is None:
            return []
        entries = self.secret_key_previous.get_secret_value().split(",")
        return [entry.strip() for entry in entries if entry.strip()]

    log_level: str = Field("INFO", validation_alias=_env("VIDEOQ_LOG_LEVEL"))
    """Log level of the command line: DEBUG, INFO, WARNING or ERROR."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("store", "queue", "upstream")
    @classmethod
    def _backend_name(cls, value: str | None) -> str | None:
        # An empty variable means "not chosen": the keys present decide, as when it is unset.
        return value.strip().lower() or None if value is not None else None

    @field_validator("t8star_base_url", "public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def worker_url(self) -> str:
        """The URL deliveries are addressed (and signed) to."""
        return self.public_url + WORKER_PATH

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
