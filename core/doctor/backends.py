"""Doctor checks that say which store, queue and upstream the settings select."""

from __future__ import annotations

from urllib.parse import urlsplit

from core.config import Settings
from core.doctor import CheckResult, Probe, failed, passed
from core.errors import ConfigError


def _unknown_choice(settings: Settings, check: str) -> CheckResult | None:
    """A failed check when VIDEOQ_STORE/QUEUE/UPSTREAM names no adapter the wiring knows."""
    from core import wiring

    variable, registry, name = {
        "store": ("VIDEOQ_STORE", wiring.STORES, settings.store_backend),
        "queue": ("VIDEOQ_QUEUE", wiring.QUEUES, settings.queue_backend),
        "upstream": ("VIDEOQ_UPSTREAM", wiring.UPSTREAMS, settings.upstream_backend),
    }[check]
    try:
        wiring.choose(registry, variable, name)
    except ConfigError as exc:
        return failed(check, exc.message, f"set {variable} to one of those, or unset it")
    return None


async def store(probe: Probe) -> CheckResult:
    """Which task store the settings select (and a half-made Supabase choice)."""
    settings = probe.settings
    if unknown := _unknown_choice(settings, "store"):
        return unknown
    if settings.uses_supabase:
        return passed("store", f"supabase at {_host(settings.supabase_url or '')}")
    half = _half_set(
        SUPABASE_URL=settings.supabase_url,
        SUPABASE_SERVICE_ROLE_KEY=settings.supabase_service_role_key,
    )
    if half:
        return failed(
            "store",
            f"{half[0]} is set without {half[1]}: tasks stay in SQLite",
            f"set {half[1]} too, or unset {half[0]}",
        )
    return passed("store", f"sqlite at {settings.db_path}")


async def queue(probe: Probe) -> CheckResult:
    """Which queue the settings select (and signing keys without a QStash token)."""
    settings = probe.settings
    if unknown := _unknown_choice(settings, "queue"):
        return unknown
    if settings.uses_qstash:
        from core.queue.qstash import api_base_url

        return passed("queue", f"qstash at {api_base_url(settings.qstash_url)}")
    if settings.qstash_current_signing_key or settings.qstash_next_signing_key:
        return failed(
            "queue",
            "QStash signing keys are set without QSTASH_TOKEN: messages use the local queue",
            "set QSTASH_TOKEN too, or unset the signing keys",
        )
    return passed("queue", "local (in the SQLite file)")


async def upstream(probe: Probe) -> CheckResult:
    """Which upstream the settings select: T8Star with a key, or the simulator without one."""
    settings = probe.settings
    if unknown := _unknown_choice(settings, "upstream"):
        return unknown
    if settings.uses_simulator:
        why = "VIDEOQ_UPSTREAM=simulator" if settings.upstream else "no T8STAR_API_KEY"
        return passed("upstream", f"simulator ({why}: no real videos are made)")
    if settings.t8star_api_key is None:
        return passed(
            "upstream", "t8star with no server key: only tasks bringing their own key run"
        )
    if not settings.t8star_api_key.get_secret_value().strip():
        return failed(
            "upstream",
            "T8STAR_API_KEY is set but blank",
            "set it to your T8Star key, or unset it for the simulator",
        )
    return passed("upstream", f"t8star at {_host(settings.t8star_base_url)} with T8STAR_API_KEY")


def _host(url: str) -> str:
    # The host only: a URL may carry credentials before the '@'.
    return urlsplit(url).hostname or url


def _half_set(**values: object) -> tuple[str, str] | None:
    (first, a), (second, b) = values.items()
    if a and not b:
        return first, second
    if b and not a:
        return second, first
    return None
