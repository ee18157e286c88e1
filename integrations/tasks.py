"""Celery tasks of the integrations package: thin, named, taking ids, calling the services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import delivery


def _enqueue_sends(integration_ids, parallel: int = 1) -> None:
    for integration_id in integration_ids:
        for _ in range(parallel):
            deliveries_send.delay(integration_id)


@shared_task(name="integrations.activities_fanout")
def activities_fanout(activity_ids: list[str] | None = None) -> int:
    """Create deliveries for recorded activities (the core enqueues this after commit by name)."""
    created = delivery.activities_fanout(activity_ids=activity_ids)
    for integration_id, count in created.items():
        parallel = min(settings.HUB_DELIVERY_PARALLEL, 1 + count // 2500)
        _enqueue_sends([integration_id], parallel)
    return sum(created.values())


@shared_task(name="integrations.deliveries_send")
def deliveries_send(integration_id: int) -> int:
    """Send an integration's due deliveries; enqueue itself again when its time budget ran out."""
    report = delivery.deliveries_send(integration_id=integration_id)
    if report.more:
        deliveries_send.delay(integration_id)
    return report.delivered


@shared_task(name="integrations.deliveries_sweep")
def deliveries_sweep() -> dict:
    """Periodic: dispatch activities nobody dispatched and enqueue every integration with due rows.

    This is what makes delivery independent of the broker keeping a message: a lost task, a
    restarted Redis or a killed worker only delays delivery until the next sweep.
    """
    dispatched, started = 0, set()
    for _ in range(20):
        created = delivery.activities_fanout()
        if not created:
            break
        dispatched += sum(created.values())
        # Sending starts while the rest of a large backlog is still being dispatched.
        _enqueue_sends(set(created) - started, settings.HUB_DELIVERY_PARALLEL)
        started |= set(created)
    due = set(delivery.integrations_due()) - started
    _enqueue_sends(due, settings.HUB_DELIVERY_PARALLEL)
    return {"dispatched": dispatched, "integrations": len(due)}
