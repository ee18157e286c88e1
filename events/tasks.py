"""Tasks of the usage metrics: drain rollup batches, build metrics, and the sweep that finds both."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from .metrics.rollups import rollups_drain, rollups_hours_prune, rollups_pending_apps
from .models import Metric


@shared_task(
    name="events.rollups_drain",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    ignore_result=True,
)
def rollups_drain_task(app_pks: list[int] | None = None) -> int:
    """Count the pending events of these apps (default: all) into their metrics' rollups."""
    return rollups_drain(app_pks=app_pks)


@shared_task(
    name="events.metrics_rebuild", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8
)
def metrics_rebuild_task(app_pk: int) -> list[int]:
    """Build the app's new or changed metrics from its stored events."""
    from .metrics.rollups import metrics_rebuild

    return metrics_rebuild(app_pk=app_pk)


@shared_task(name="events.rollups_sweep")
def rollups_sweep() -> dict:
    """Enqueue drains for batches waiting longer than HUB_ROLLUP_STALE_SECONDS and forgotten builds;
    prune old hour rows."""
    stale = timezone.now() - timedelta(seconds=settings.HUB_ROLLUP_STALE_SECONDS)
    apps = rollups_pending_apps(older_than=stale)
    if apps:
        rollups_drain_task.delay(apps)
    building = sorted(
        set(
            Metric.objects.filter(status=Metric.Status.BUILDING, updated_at__lt=stale).values_list(
                "app_id", flat=True
            )
        )
    )
    for app_pk in building:
        metrics_rebuild_task.delay(app_pk)
    return {"drain": apps, "rebuild": building, "pruned": rollups_hours_prune()}


@shared_task(name="events.usage_event_storage_maintain", ignore_result=True)
def usage_event_storage_maintain_task() -> dict:
    """Make the events table's partitions ahead, retire expired ones, prune old dedupe keys."""
    from .partitions import usage_event_storage_maintain

    return usage_event_storage_maintain()
