"""System checks of the Prometheus endpoint (`manage.py check --deploy` lists them)."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def metrics_check(app_configs, **kwargs) -> list[Warning]:
    """With /metrics on: a token hard to guess, and request figures shared by the web processes."""
    token = settings.HUB_METRICS_TOKEN
    if not token:
        return []
    issues = []
    if len(token) < 24:
        issues.append(
            Warning(
                "HUB_METRICS_TOKEN is short: /metrics is guarded by it alone.",
                hint="Use a random value of at least 24 characters, e.g. `openssl rand -hex 24`.",
                id="hub.W010",
            )
        )
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        issues.append(
            Warning(
                "Request figures are per process: each scrape sees only the web process that answered.",
                hint="Set PROMETHEUS_MULTIPROC_DIR to an empty directory the web processes share, "
                "emptied before they start (docs/operations.md).",
                id="hub.W011",
            )
        )
    return issues
