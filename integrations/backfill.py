"""Backfills: a destination gets the stored usage events of a time range, as a background job
with progress (`Backfill` rows), resumable after a worker is killed, never making a second delivery
of an event (delivery ids come from the subscription and the event, as when forwarding)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from events.models import UsageEvent
from hub.errors import HubError

from .delivery import FanoutResult, deliveries_create
from .delivery_store import NewDelivery
from .forwarding import EVENT_FIELDS, event_delivery, subscriptions_of_apps
from .models import Backfill, Integration


def backfill_start(
    *, integration: Integration, since: datetime, until: datetime, by: str = "", enqueue: bool = True
) -> Backfill:
    """Start sending the usage events of [since, until) of the destination's apps to it (by a
    worker; with `enqueue=False` the caller runs it with `backfill_run`)."""
    if since >= until:
        raise HubError("The range must end after it starts.")
    if until > timezone.now() + timedelta(days=1):
        raise HubError("The range cannot end in the future.")
    if not integration.subscriptions.filter(enabled=True, item_kind="usage_event").exists():
        raise HubError(f"{integration.name} takes no usage events: turn a subscription on first.")
    if integration.backfills.filter(status=Backfill.Status.RUNNING).exists():
        raise HubError("A backfill of this destination is running already.")
    apps = list(integration.apps.values_list("pk", flat=True))
    total = UsageEvent.objects.filter(app_id__in=apps, timestamp__gte=since, timestamp__lt=until).count()
    backfill = Backfill.objects.create(
        integration=integration, since=since, until=until, total=total, created_by=by
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(backfill.pk))
    return backfill


def _enqueue(backfill_id: int) -> None:
    from .tasks import backfill_run

    backfill_run.delay(backfill_id)


def backfill_cancel(*, backfill: Backfill) -> None:
    """Stop a running backfill (what it queued already is still sent)."""
    Backfill.objects.filter(pk=backfill.pk, status=Backfill.Status.RUNNING).update(
        status=Backfill.Status.CANCELLED, updated_at=timezone.now()
    )


def _chunk(backfill: Backfill) -> list[dict]:
    apps = sorted(backfill.integration.apps.values_list("pk", flat=True))
    for app_id in apps:
        if app_id < backfill.cursor_app_id:
            continue
        events = UsageEvent.objects.filter(
            app_id=app_id, timestamp__gte=backfill.since, timestamp__lt=backfill.until
        )
        if app_id == backfill.cursor_app_id and backfill.cursor_timestamp is not None:
            ts, pk = backfill.cursor_timestamp, backfill.cursor_event_pk
            events = events.filter(Q(timestamp__gt=ts) | Q(timestamp=ts, pk__gt=pk))
        rows = list(events.order_by("timestamp", "id").values(*EVENT_FIELDS)[: settings.HUB_BACKFILL_CHUNK])
        if rows:
            return rows
    return []


def backfill_step(*, backfill_id: int) -> tuple[bool, FanoutResult]:
    """Walk one chunk of a running backfill in one transaction: its deliveries (pending, for the
    senders) and the cursor past it commit together. Returns (more to do, what was created); a
    backfill another worker holds is left to it (False)."""
    with transaction.atomic():
        backfill = (
            Backfill.objects.select_for_update(skip_locked=True)
            .select_related("integration")
            .filter(pk=backfill_id, status=Backfill.Status.RUNNING)
            .first()
        )
        if backfill is None:
            return False, FanoutResult()
        rows = _chunk(backfill)
        now = timezone.now()
        if not rows:
            Backfill.objects.filter(pk=backfill.pk).update(status=Backfill.Status.DONE, updated_at=now)
            return False, FanoutResult()
        subscriptions = subscriptions_of_apps({r["app_id"] for r in rows})
        items: list[NewDelivery] = []
        for event in rows:
            for subscription, compiled in subscriptions.get(event["app_id"], ()):
                if subscription.integration_id != backfill.integration_id:
                    continue
                new = event_delivery(subscription, compiled, event)
                if new is not None:
                    items.append(new)
        groups = {backfill.integration_id: (backfill.integration, items)} if items else {}
        result = deliveries_create(groups, now=now, send=False) if groups else FanoutResult()
        last = rows[-1]
        Backfill.objects.filter(pk=backfill.pk).update(
            done=backfill.done + len(rows),
            queued=backfill.queued + sum(result.values()),
            cursor_app_id=last["app_id"],
            cursor_timestamp=last["timestamp"],
            cursor_event_pk=last["id"],
            updated_at=now,
        )
    return True, result


def backfill_run(
    *,
    backfill_id: int,
    budget_seconds: float = 20.0,
    on_chunk: Callable[[FanoutResult], object] | None = None,
) -> bool:
    """Run a backfill's chunks for at most the time budget; True when it has more to do."""
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        more, created = backfill_step(backfill_id=backfill_id)
        if on_chunk is not None:
            on_chunk(created)
        if not more:
            return False
    return True


def backfills_stalled() -> list[int]:
    """Running backfills no worker has advanced for HUB_BACKFILL_STALLED_SECONDS (their task was
    lost, or its worker killed): the sweep restarts them."""
    cutoff = timezone.now() - timedelta(seconds=settings.HUB_BACKFILL_STALLED_SECONDS)
    return list(
        Backfill.objects.filter(status=Backfill.Status.RUNNING, updated_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
