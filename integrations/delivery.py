"""The delivery engine: activities → Delivery rows → batched requests, each recorded as an Attempt.

Everything that must survive lives in PostgreSQL: a pending delivery with `next_attempt_at` is
claimed with `SELECT ... FOR UPDATE SKIP LOCKED` inside the transaction that sends it and
records the outcome, so a worker killed mid-request simply releases its rows (rolled back) and
they are sent again under the same messageId. Retries are scheduled in the rows; the periodic
sweep enqueues what is due.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hub.models import Activity

from . import outbound
from .connectors import connector_for
from .models import Attempt, Delivery, Integration

logger = logging.getLogger(__name__)

_REQUEST_EXCERPT = 4096
_RESPONSE_EXCERPT = 2048
_avg_message_bytes: dict[str, float] = defaultdict(lambda: 600.0)


# --- Fan-out ------------------------------------------------------------------------------------


def activities_fanout(*, activity_ids: list[str] | None = None, limit: int = 5000) -> dict[int, int]:
    """Create the deliveries of undispatched activities (these ids, or the oldest `limit`).

    Each activity gets one delivery per enabled integration that has its app and its kind;
    activities are marked dispatched in the same transaction. Returns {integration id: new rows}.
    """
    created: dict[int, int] = defaultdict(int)
    with transaction.atomic():
        qs = Activity.objects.select_for_update(skip_locked=True).filter(dispatched_at__isnull=True)
        if activity_ids is not None:
            qs = qs.filter(pk__in=activity_ids)
        rows = list(qs.order_by("created_at").values_list("pk", "app_id", "kind")[:limit])
        if not rows:
            return {}
        links = Integration.apps.through.objects.filter(
            app_id__in={app_id for _, app_id, _ in rows}, integration__enabled=True
        ).values_list("app_id", "integration_id", "integration__activities")
        by_app: dict[int, list[tuple[int, set[str]]]] = defaultdict(list)
        for app_id, integration_id, kinds in links:
            by_app[app_id].append((integration_id, set(kinds or ())))
        now = timezone.now()
        deliveries = []
        for pk, app_id, kind in rows:
            for integration_id, kinds in by_app.get(app_id, ()):
                if kind in kinds:
                    deliveries.append(
                        Delivery(
                            activity_id=pk,
                            integration_id=integration_id,
                            next_attempt_at=now,
                            created_at=now,
                            retry_window_start=now,
                        )
                    )
                    created[integration_id] += 1
        Delivery.objects.bulk_create(deliveries, batch_size=2000, ignore_conflicts=True)
        Activity.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(dispatched_at=now)
    return dict(created)


def integrations_due(*, now: datetime | None = None) -> list[int]:
    """Enabled integrations with at least one delivery due now."""
    now = now or timezone.now()
    return list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now, integration__enabled=True
        )
        .values_list("integration_id", flat=True)
        .distinct()
    )


# --- Sending ------------------------------------------------------------------------------------


@dataclass
class SendReport:
    requests: int = 0
    delivered: int = 0
    retry: int = 0
    failed: int = 0
    dead: int = 0
    more: bool = False
    attempts: list[Attempt] = field(default_factory=list)


def backoff_delay(attempts: int) -> float:
    """Seconds before retry number `attempts` (1-based): exponential, capped, with jitter."""
    base = settings.HUB_DELIVERY_BACKOFF_BASE
    cap = settings.HUB_DELIVERY_BACKOFF_MAX
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def _classify(status: int) -> str:
    if 200 <= status < 300:
        return Attempt.Outcome.DELIVERED
    if status in (408, 429) or status >= 500:
        return Attempt.Outcome.RETRY
    return Attempt.Outcome.FAILED


def _excerpt(raw: bytes, limit: int) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")


def _message_of(connector, integration: Integration, delivery: Delivery) -> dict:
    if delivery.activity_id is None:
        return delivery.test_message
    return connector.message(integration=integration, activity=delivery.activity)


def message_for(delivery: Delivery) -> dict:
    """The message a delivery sends (for the delivery log)."""
    integration = delivery.integration
    return _message_of(connector_for(integration.kind), integration, delivery)


def _claim(integration: Integration, connector, now: datetime, only: list | None) -> list[Delivery]:
    avg = _avg_message_bytes[integration.kind]
    limit = max(1, min(connector.max_batch_messages, int(connector.max_batch_bytes / avg * 1.2)))
    qs = (
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("activity", "activity__customer")
        .filter(integration=integration, status=Delivery.Status.PENDING)
    )
    if only is not None:
        qs = qs.filter(pk__in=only)
    else:
        qs = qs.filter(next_attempt_at__lte=now).order_by("next_attempt_at")
    return list(qs[:limit])


def _send_batch(integration_id: int, report: SendReport, only: list | None = None) -> bool:
    """Claim due deliveries, send one request, record it; return False when nothing was due."""
    with transaction.atomic():
        integration = Integration.objects.filter(pk=integration_id).first()
        if integration is None or (not integration.enabled and only is None):
            return False
        connector = connector_for(integration.kind)
        now = timezone.now()
        rows = _claim(integration, connector, now, only)
        if not rows:
            return False
        batch, batch_rows = [], []
        size = connector.batch_overhead()
        for delivery in rows:
            raw = orjson.dumps(_message_of(connector, integration, delivery))
            if len(raw) > connector.max_message_bytes:
                _fail_alone(integration, delivery, raw, connector.max_message_bytes, report)
                continue
            if batch and size + len(raw) + 1 > connector.max_batch_bytes:
                break
            batch.append(raw)
            batch_rows.append(delivery)
            size += len(raw) + 1
        if not batch:
            return True
        _avg_message_bytes[integration.kind] = size / len(batch)
        request = connector.batch_request(integration=integration, messages=batch)
        attempt = _post(integration, request, len(batch))
        _record(integration, attempt, batch_rows, report)
        report.requests += 1
        report.attempts.append(attempt)
        return attempt.outcome != Attempt.Outcome.RETRY


def _post(integration: Integration, request, count: int) -> Attempt:
    attempt = Attempt(
        integration=integration,
        url=request.url[:300],
        message_count=count,
        request_bytes=len(request.body),
        request_excerpt=_excerpt(request.body, _REQUEST_EXCERPT),
    )
    try:
        response = outbound.post(
            request.url,
            data=request.body,
            headers=request.headers,
            auth=request.auth,
            timeout=settings.HUB_DELIVERY_TIMEOUT,
        )
    except outbound.OutboundRefused as exc:
        attempt.outcome, attempt.error = Attempt.Outcome.FAILED, f"refused: {exc}"
        _needs_attention(integration, f"The destination was refused: {exc}")
        return attempt
    except requests.Timeout as exc:
        attempt.outcome, attempt.error = Attempt.Outcome.RETRY, f"timeout: {exc}"
        return attempt
    except requests.RequestException as exc:
        attempt.outcome, attempt.error = Attempt.Outcome.RETRY, f"connection error: {exc}"
        return attempt
    attempt.status_code = response.status_code
    attempt.latency_ms = response.latency_ms
    attempt.response_excerpt = _excerpt(response.body, _RESPONSE_EXCERPT)
    attempt.outcome = _classify(response.status_code)
    if 300 <= response.status_code < 400:
        attempt.error = f"redirect to {response.headers.get('Location', '?')} not followed"
    elif response.status_code == 429:
        attempt.retry_after = _retry_after(response.headers.get("Retry-After"))
    if response.status_code in (401, 403):
        _needs_attention(
            integration, f"The destination answered {response.status_code}: check the write key."
        )
    elif attempt.outcome == Attempt.Outcome.DELIVERED and integration.needs_attention:
        Integration.objects.filter(pk=integration.pk).update(needs_attention=False, attention_reason="")
    return attempt


def _needs_attention(integration: Integration, reason: str) -> None:
    Integration.objects.filter(pk=integration.pk).update(needs_attention=True, attention_reason=reason[:300])


def _link(attempt: Attempt, rows: list[Delivery]) -> None:
    through = Attempt.deliveries.through
    through.objects.bulk_create(
        [through(attempt_id=attempt.pk, delivery_id=d.pk) for d in rows], batch_size=2500
    )


def _fail_alone(integration, delivery: Delivery, raw: bytes, limit: int, report: SendReport) -> None:
    attempt = Attempt.objects.create(
        integration=integration,
        url="",
        message_count=1,
        request_bytes=len(raw),
        request_excerpt=_excerpt(raw, _REQUEST_EXCERPT),
        error=f"message is {len(raw)} bytes, over the {limit}-byte limit per message: not sent",
        outcome=Attempt.Outcome.FAILED,
    )
    _link(attempt, [delivery])
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.FAILED,
        next_attempt_at=None,
        last_error=attempt.error,
        last_attempt=attempt,
        updated_at=timezone.now(),
    )
    report.failed += 1


def _record(integration: Integration, attempt: Attempt, rows: list[Delivery], report: SendReport) -> None:
    attempt.save()
    _link(attempt, rows)
    now = timezone.now()
    ids = [d.pk for d in rows]
    common = {"last_status_code": attempt.status_code, "last_attempt": attempt, "updated_at": now}
    if attempt.outcome == Attempt.Outcome.DELIVERED:
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.DELIVERED,
            attempts=F("attempts") + 1,
            delivered_at=now,
            next_attempt_at=None,
            last_error="",
            **common,
        )
        report.delivered += len(rows)
        return
    error = attempt.error or f"HTTP {attempt.status_code}: {attempt.response_excerpt[:200]}"
    if attempt.outcome == Attempt.Outcome.FAILED:
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.FAILED,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            last_error=error,
            **common,
        )
        report.failed += len(rows)
        return
    window = timedelta(seconds=settings.HUB_DELIVERY_RETRY_WINDOW)
    retry_after = getattr(attempt, "retry_after", None)
    for delivery in rows:
        delivery.attempts += 1
        if retry_after is not None:
            delay = retry_after + random.uniform(0, max(0.05, retry_after * 0.1))
        else:
            delay = backoff_delay(delivery.attempts)
        next_at = now + timedelta(seconds=delay)
        delivery.last_error = error
        delivery.last_status_code = attempt.status_code
        delivery.last_attempt = attempt
        delivery.updated_at = now
        if delivery.test_message is not None:
            delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
            report.failed += 1
        elif next_at > delivery.retry_window_start + window:
            delivery.status, delivery.next_attempt_at = Delivery.Status.DEAD, None
            delivery.last_error = f"retry window over, gave up: {error}"
            report.dead += 1
        else:
            delivery.next_attempt_at = next_at
            report.retry += 1
    Delivery.objects.bulk_update(
        rows,
        [
            "attempts",
            "status",
            "next_attempt_at",
            "last_error",
            "last_status_code",
            "last_attempt",
            "updated_at",
        ],
    )


def deliveries_send(*, integration_id: int, budget_seconds: float | None = None) -> SendReport:
    """Send the integration's due deliveries batch after batch, for at most the time budget.

    Stops at the first retryable failure (the destination is struggling: its rows wait for their
    backoff). `more` tells the caller that due rows remain.
    """
    budget = settings.HUB_DELIVERY_SEND_BUDGET if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    report = SendReport()
    while time.monotonic() < deadline:
        if not _send_batch(integration_id, report):
            return report
    report.more = True
    return report


def delivery_send_now(*, delivery: Delivery) -> Attempt | None:
    """Send one delivery at once (Send test event, Retry); return its attempt."""
    report = SendReport()
    _send_batch(delivery.integration_id, report, only=[delivery.pk])
    return report.attempts[0] if report.attempts else None
