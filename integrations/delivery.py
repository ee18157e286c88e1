"""The delivery engine: items → Delivery rows with their message stored → batched requests, each
recorded as one Attempt row that knows its deliveries.

Everything that must survive lives in PostgreSQL. The fan-out renders each message once, from
the data as it was when the item happened, and stores its exact bytes; every retry, Retry and
Replay sends those bytes under the same message id (only batch-level fields, like `sentAt` and
auth, are of the send). A pending delivery with `next_attempt_at` is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` inside the transaction that sends it and records the outcome,
so a worker killed mid-request simply releases its rows (rolled back) and they are sent again
under the same message id. Claim, send and record are a few statements per request
(`integrations.delivery_store`).

A retryable failure opens the integration's circuit: while it is open, one small probe request
(one delivery) goes out every `HUB_DELIVERY_PROBE_SECONDS`, and its first success makes every
waiting delivery due at once, so a backlog drains as soon as the destination is back instead of
waiting out each delivery's backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .connectors import connector_for
from .delivery_http import REQUEST_EXCERPT_BYTES, Outcome, error_text, excerpt, request_post
from .delivery_rows import Claimed, RetryMark, retry_states
from .delivery_store import store
from .models import Attempt, Delivery, Integration

logger = logging.getLogger(__name__)

_avg_message_bytes: dict[str, float] = defaultdict(lambda: 600.0)


def deliveries_send_new(*, integration_id: int, ids: list) -> bool:
    """Send these new deliveries now (after their fan-out committed), in transactions of their
    own within the integration's request slots; True when some are left pending (no free slot, a
    retryable answer). The caller runs each integration's in a send thread of its own
    (`integrations.send_threads`), so a destination that hangs holds up neither the others' sends
    nor their request slots."""
    report = SendReport()
    # A few requests' worth at a time: a claim by id reads every id it is given, so claiming from
    # the whole list for each request would cost (ids x requests).
    for start in range(0, len(ids), _SEND_NEW_STEP):
        part = ids[start : start + _SEND_NEW_STEP]
        while _send_batch(integration_id, report, only=part, need_slot=True):
            pass
    return store().pending_any(ids=ids)


_SEND_NEW_STEP = 500


def integrations_send_due(*, now: datetime | None = None) -> list[int]:
    """Enabled integrations whose circuit is closed with a delivery due now."""
    now = now or timezone.now()
    due = Delivery.objects.filter(
        integration=OuterRef("pk"), status=Delivery.Status.PENDING, next_attempt_at__lte=now
    )
    closed = Integration.objects.filter(enabled=True, outage_since__isnull=True).filter(Exists(due))
    return list(closed.values_list("pk", flat=True))


def probes_due(*, now: datetime | None = None) -> list[int]:
    """Enabled integrations whose circuit is open with a probe due (one sender each is enough:
    one probe goes out at a time)."""
    now = now or timezone.now()
    probing = Integration.objects.filter(enabled=True, outage_since__isnull=False, probe_at__lte=now)
    return list(probing.values_list("pk", flat=True))


# --- Sending ------------------------------------------------------------------------------------


@dataclass
class SendReport:
    requests: int = 0
    delivered: int = 0
    retry: int = 0
    failed: int = 0
    dead: int = 0
    more: bool = False
    # The circuit was open and a probe succeeded: the backlog is due now (start parallel senders).
    recovered: bool = False
    # The circuit is open and the next probe waits until then.
    probe_at: datetime | None = None
    attempt_ids: list[int] | None = None


def backoff_delay(attempts: int) -> float:
    """Seconds before retry number `attempts` (1-based): exponential, capped, with jitter."""
    base = settings.HUB_DELIVERY_BACKOFF_BASE
    cap = settings.HUB_DELIVERY_BACKOFF_MAX
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def _retry_marks(
    rows: list[Claimed], error: str, retry_after: float | None, now: datetime
) -> list[RetryMark]:
    window = timedelta(seconds=settings.HUB_DELIVERY_RETRY_WINDOW)
    states = retry_states([r.id for r in rows])
    marks = []
    for claimed in rows:
        row = states[claimed.id]
        if retry_after is not None:
            delay = retry_after + random.uniform(0, max(0.05, retry_after * 0.1))
        else:
            delay = backoff_delay(row.attempts + 1)
        next_at = now + timedelta(seconds=delay)
        if row.item_kind == Delivery.ItemKind.TEST:
            marks.append(RetryMark(claimed.id, Delivery.Status.FAILED, None, error))
        elif next_at > row.retry_window_start + window:
            gave_up = f"retry window over, gave up: {error}"
            marks.append(RetryMark(claimed.id, Delivery.Status.DEAD, None, gave_up))
        else:
            marks.append(RetryMark(claimed.id, Delivery.Status.PENDING, next_at, error))
    return marks


def attempt_record(integration: Integration, out: Outcome, rows: list[Claimed], report: SendReport) -> None:
    """Record one request: its attempt, and each claimed delivery's state from its answer."""
    db = store()
    attempt = out.attempt
    attempt.delivery_ids = [str(r.id) for r in rows]
    attempt.message_count = len(rows)
    attempt_id = db.attempt_insert(attempt=attempt)
    report.attempt_ids = [*(report.attempt_ids or []), attempt_id]
    now = timezone.now()
    ids = [r.id for r in rows]
    if attempt.outcome == Attempt.Outcome.DELIVERED:
        db.mark_delivered(ids=ids, attempt_id=attempt_id, status_code=attempt.status_code, now=now)
        report.delivered += len(rows)
    elif attempt.outcome == Attempt.Outcome.FAILED:
        db.mark_failed(
            ids=ids,
            attempt_id=attempt_id,
            status_code=attempt.status_code,
            error=error_text(attempt),
            now=now,
        )
        report.failed += len(rows)
    else:
        marks = _retry_marks(rows, error_text(attempt), out.retry_after, now)
        db.mark_retry(marks=marks, attempt_id=attempt_id, status_code=attempt.status_code, now=now)
        for m in marks:
            if m.status == Delivery.Status.PENDING:
                report.retry += 1
            elif m.status == Delivery.Status.DEAD:
                report.dead += 1
            else:
                report.failed += 1
    attention_note(integration, out)


def batches_split(connector, integration: Integration, items: list, raw) -> tuple[list[list], list]:
    """Split items into requests within the connector's limits, one action's items per request
    (an action may have a request of its own); return (batches, oversize items)."""
    by_action: dict[str, list] = {}
    for item in items:
        by_action.setdefault(item.action, []).append(item)
    batches: list[list] = []
    oversize: list = []
    for group in by_action.values():
        b, o = _batches_of_one_action(connector, integration, group, raw)
        batches.extend(b)
        oversize.extend(o)
    return batches, oversize


def _batches_of_one_action(connector, integration: Integration, items: list, raw) -> tuple[list[list], list]:
    kind = integration.kind
    most = connector.batch_size(integration)
    batches: list[list] = []
    oversize: list = []
    batch: list = []
    size = overhead = connector.batch_overhead()
    for item in items:
        length = len(raw(item))
        if length > connector.max_message_bytes:
            oversize.append(item)
            continue
        if batch and (size + length + 1 > connector.max_batch_bytes or len(batch) >= most):
            batches.append(batch)
            batch, size = [], overhead
        batch.append(item)
        size += length + 1
    if batch:
        batches.append(batch)
        _avg_message_bytes[kind] = size / len(batch)
    return batches, oversize


def oversize_error(length: int, limit: int) -> str:
    return f"message is {length} bytes, over the {limit}-byte limit per message: not sent"


def attention_note(integration: Integration, out: Outcome) -> None:
    changes: dict = {}
    if out.attention:
        changes = {"needs_attention": True, "attention_reason": out.attention[:300]}
    elif (
        out.attempt.status_code
        and out.attempt.outcome == Attempt.Outcome.DELIVERED
        and integration.needs_attention
    ):
        changes = {"needs_attention": False, "attention_reason": ""}
        integration.needs_attention = False
    if changes:
        Integration.objects.filter(pk=integration.pk).update(**changes)


def oversize_fail(integration: Integration, row: Claimed, limit: int, report: SendReport) -> None:
    """Record a claimed delivery over the destination's message limit as failed (no request)."""
    attempt = Attempt(
        integration_id=integration.pk,
        created_at=timezone.now(),
        url="",
        request_bytes=len(row.message),
        request_excerpt=excerpt(row.message, REQUEST_EXCERPT_BYTES),
        error=oversize_error(len(row.message), limit),
        outcome=Attempt.Outcome.FAILED,
    )
    attempt_record(integration, Outcome(attempt), [row], report)


def circuit_open(integration: Integration, out: Outcome, now: datetime) -> datetime:
    """Open (or keep open) the integration's circuit after a retryable failure; return the next probe."""
    wait = settings.HUB_DELIVERY_PROBE_SECONDS
    if out.retry_after is not None:
        wait = max(wait, out.retry_after)
    probe_at = now + timedelta(seconds=wait)
    Integration.objects.filter(pk=integration.pk).update(
        outage_since=integration.outage_since or now,
        outage_error=error_text(out.attempt)[:300],
        probe_at=probe_at,
    )
    if integration.outage_since is not None:
        # Deliveries that never got a try of their own during a long outage still end with the window.
        window = timedelta(seconds=settings.HUB_DELIVERY_RETRY_WINDOW)
        Delivery.objects.filter(
            integration_id=integration.pk, status=Delivery.Status.PENDING, retry_window_start__lt=now - window
        ).update(
            status=Delivery.Status.DEAD,
            next_attempt_at=None,
            last_error=f"retry window over during an outage, gave up: {error_text(out.attempt)}"[:2000],
            updated_at=now,
        )
    return probe_at


def _circuit_close(integration: Integration, now: datetime) -> None:
    """The destination answers again: every waiting delivery is due now."""
    Integration.objects.filter(pk=integration.pk).update(outage_since=None, outage_error="", probe_at=None)
    Delivery.objects.filter(
        integration_id=integration.pk, status=Delivery.Status.PENDING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)


def _batch_limit(connector, integration: Integration) -> int:
    avg = _avg_message_bytes[integration.kind]
    return max(1, min(connector.batch_size(integration), int(connector.max_batch_bytes / avg * 1.2)))


def _send_batch(
    integration_id: int, report: SendReport, only: list | None = None, need_slot: bool = False
) -> bool:
    """Claim due deliveries, send one request, record it; False when there is nothing (more) to do."""
    db = store()
    with transaction.atomic(), ExitStack() as stack:
        integration = Integration.objects.filter(pk=integration_id).first()
        if integration is None or (not integration.enabled and only is None):
            return False
        connector = connector_for(integration.kind)
        now = timezone.now()
        if need_slot and integration.outage_since is not None:
            return False  # a send-now of a destination whose circuit opened meanwhile: its senders
        probing = integration.outage_since is not None and only is None
        if probing:
            if integration.probe_at is not None and integration.probe_at > now:
                return False  # the prober that failed last has the next probe queued
            # One prober at a time: its slot stays taken while the probe is out.
            if not stack.enter_context(db.probe_slot(integration_id=integration_id)):
                return False
            rows = db.claim(integration_id=integration_id, limit=1, due_by=None, only=None)
            if not rows:
                _circuit_close(integration, now)
                return False
        else:
            slot = db.send_slot(integration_id=integration_id, slots=settings.HUB_DELIVERY_MAX_IN_FLIGHT)
            if not stack.enter_context(slot) and (only is None or need_slot):
                return False  # as many requests as allowed are in flight already
            limit = _batch_limit(connector, integration)
            rows = db.claim(integration_id=integration_id, limit=limit, due_by=now, only=only)
            if not rows:
                return False
        batches, oversize = batches_split(connector, integration, rows, lambda r: r.message)
        for row in oversize:
            oversize_fail(integration, row, connector.max_message_bytes, report)
        if not batches:
            return True
        for batch in batches:
            request = connector.batch_request(
                integration=integration, messages=[r.message for r in batch], action=batch[0].action
            )
            out = request_post(integration, request)
            out.attempt.probe = probing
            attempt_record(integration, out, batch, report)
            report.requests += 1
            if out.attempt.outcome == Attempt.Outcome.RETRY:
                # The rest of the claim stays as it was (released with this transaction).
                if only is None or need_slot:
                    report.probe_at = circuit_open(integration, out, timezone.now())
                return False
        if probing:
            # Any answer that is not retryable means the destination is reachable again.
            _circuit_close(integration, timezone.now())
            report.recovered = True
        return True


def deliveries_send(*, integration_id: int, budget_seconds: float | None = None) -> SendReport:
    """Send the integration's due deliveries batch after batch, for at most the time budget.

    Stops at the first retryable failure (the circuit opens: the integration is probed from then
    on). `more` tells the caller that due rows remain; `recovered` that a probe just closed the
    circuit (the whole backlog is due); `probe_at` when the next probe is due.
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
    if not report.attempt_ids:
        return None
    return Attempt.objects.filter(pk=report.attempt_ids[-1]).first()
