"""Tasks of the inbox: drain pending messages, and a periodic sweep so none waits on a lost task."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from .processing import inbox_process_pending, inbox_stale_count
from .receipt import DRAIN_TASK

_MAX_BATCHES = 40  # then hand over: another drain task is queued if work remains


@shared_task(
    name=DRAIN_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True
)
def inbox_drain() -> int:
    """Process pending inbox messages until none is left (or a bounded amount, then re-enqueue)."""
    batch = settings.HUB_INBOX_BATCH_SIZE
    total = 0
    for _ in range(_MAX_BATCHES):
        done = inbox_process_pending(limit=batch)
        total += done
        if done < batch:
            return total
    inbox_drain.delay()
    return total


@shared_task(name="sources.inbox_sweep")
def inbox_sweep() -> int:
    """Enqueue a drain when messages have waited pending longer than HUB_INBOX_STALE_SECONDS."""
    stale = inbox_stale_count(older_than=timedelta(seconds=settings.HUB_INBOX_STALE_SECONDS))
    if stale:
        inbox_drain.delay()
    return stale
