"""Retention of the delivery log: delivered deliveries and their attempts go after
HUB_DELIVERY_KEEP_DELIVERED_DAYS, failed and dead ones after HUB_DELIVERY_KEEP_FAILED_DAYS, in small
batches run by the scheduler; pending and retrying rows are never touched."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .models import Attempt, Delivery, Integration


def deliveries_prune(*, now: datetime | None = None, batch: int = 1000, budget_seconds: float = 20.0) -> dict:
    """Delete delivered deliveries older than HUB_DELIVERY_KEEP_DELIVERED_DAYS and failed or dead
    ones older than HUB_DELIVERY_KEEP_FAILED_DAYS, with their attempts, in small batches (each its
    own short transaction, oldest first per integration): pending rows are never touched."""
    now = now or timezone.now()
    delivered_cutoff = now - timedelta(days=settings.HUB_DELIVERY_KEEP_DELIVERED_DAYS)
    failed_cutoff = now - timedelta(days=settings.HUB_DELIVERY_KEEP_FAILED_DAYS)
    deadline = time.monotonic() + budget_seconds
    counts = {"deliveries": 0, "attempts": 0}
    for integration_id in Integration.objects.values_list("pk", flat=True):
        for statuses, cutoff in (
            ([Delivery.Status.DELIVERED], delivered_cutoff),
            ([Delivery.Status.FAILED, Delivery.Status.DEAD], failed_cutoff),
        ):
            while time.monotonic() < deadline:
                ids = list(
                    Delivery.objects.filter(
                        integration_id=integration_id, status__in=statuses, created_at__lt=cutoff
                    )
                    .order_by("created_at")
                    .values_list("pk", flat=True)[:batch]
                )
                if not ids:
                    break
                counts["deliveries"] += Delivery.objects.filter(pk__in=ids, status__in=statuses).delete()[0]
        # An attempt goes with the longest-kept of what it could have carried.
        for outcome_filter, cutoff in (
            ({"outcome": Attempt.Outcome.DELIVERED}, delivered_cutoff),
            ({}, failed_cutoff),
        ):
            while time.monotonic() < deadline:
                ids = list(
                    Attempt.objects.filter(
                        integration_id=integration_id, created_at__lt=cutoff, **outcome_filter
                    )
                    .order_by("created_at")
                    .values_list("pk", flat=True)[:batch]
                )
                if not ids:
                    break
                counts["attempts"] += Attempt.objects.filter(pk__in=ids).delete()[0]
    return counts
