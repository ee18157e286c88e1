"""System checks of the hub's hardening (`manage.py check --deploy` lists them)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

from .rate_limits import rate_parse


@register(Tags.security, deploy=True)
def hardening_check(app_configs, **kwargs) -> list[Warning]:
    """Rate limiting has a shared Redis; login failures are counted in a shared cache."""
    issues = []
    if rate_parse(settings.HUB_RATE_LIMIT) is None or not settings.HUB_RATE_LIMIT_REDIS_URL:
        issues.append(
            Warning(
                "API rate limiting is off.",
                hint="Set HUB_RATE_LIMIT (e.g. 600/60s) and HUB_RATE_LIMIT_REDIS_URL (or a redis:// broker).",
                id="hub.W001",
            )
        )
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith(("LocMemCache", "DummyCache")):
        issues.append(
            Warning(
                "Failed logins are counted per process: the default cache is not shared.",
                hint="Set CACHE_URL to Redis (e.g. redis://127.0.0.1:6379/1) so login throttling holds "
                "across every web process.",
                id="hub.W002",
            )
        )
    return issues
