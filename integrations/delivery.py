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

import email.utils
import logging
import random
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import outbound
from .connectors import connector_for
from .delivery_store import Claimed, NewDelivery, RetryMark, retry_states, store
from .models import Attempt, Delivery, Integration

logger = logging.getLogger(__name__)

REQUEST_EXCERPT_BYTES = 4096
RESPONSE_EXCERPT_BYTES = 2048
_avg_message_bytes: dict[str, float] = defaultdict(lambda: 600.0)


# --- Fan-out ------------------------------------------------------------------------------------


def _activity_links(app_ids: set[int]) -> dict[int, list[tuple[Integration, set[str]]]]:
    by_app: dict[int, list[tuple[Integration, set[str]]]] = defaultdict(list)
    through = Integration.apps.through
    links = through.objects.filter(app_id__in=app_ids, integration__enabled=True).select_related(
        "integration"
    )
    for link in links:
        integration = link.integration
        by_app[link.app_id].append((integration, set(integration.activities or ())))
    return by_app


class FanoutResult(dict):
    """{integration id: new deliveries}, and `waiting`: the integrations left with pending ones."""

    def __init__(self, created: dict[int, int] | None = None, waiting: set[int] | None = None):
        super().__init__(created or {})
        self.waiting = waiting or set()
        self.batches = 0  # the forward batches (or customer changes) taken
        self.more = False  # the chunk was full: more may be waiting
        self.send_now: dict[int, list] = {}  # pending deliveries to send after the commit


def activities_fanout(
    *, activity_ids: list[str] | None = None, limit: int = 5000, send: bool = True
) -> FanoutResult:
    """Create the deliveries of undispatched activities (these ids, or the oldest `limit`).

    Each activity gets one delivery per enabled integration that has its app and its kind, its
    message rendered now from the activity's own snapshot; activities are marked dispatched in
    the same transaction (see `deliveries_create` for `send`). Returns {integration id: new rows}.
    """
    db = store()
    with transaction.atomic():
        now = timezone.now()
        rows = db.activities_claim(ids=activity_ids, limit=limit, now=now)
        if not rows:
            return FanoutResult()
        by_app = _activity_links({r.app_id for r in rows})
        groups: dict[int, tuple[Integration, list[NewDelivery]]] = {}
        for row in rows:
            for integration, kinds in by_app.get(row.app_id, ()):
                if row.kind not in kinds:
                    continue
                connector = connector_for(integration.kind)
                message = connector.activity_message(integration=integration, activity=row)
                group = groups.setdefault(integration.pk, (integration, []))[1]
                group.append(
                    NewDelivery(
                        integration_id=integration.pk,
                        item_kind=Delivery.ItemKind.ACTIVITY,
                        item_id=row.id,
                        action="",
                        message_id=row.id,
                        message=orjson.dumps(message).decode(),
                        activity_id=row.id,
                    )
                )
        return deliveries_create(groups, now=now, send=send)


def deliveries_create(
    groups: dict[int, tuple[Integration, list[NewDelivery]]], *, now: datetime, send: bool
) -> FanoutResult:
    """Insert new deliveries, grouped by integration, in the caller's transaction (a fan-out's).

    With `send` and one integration whose circuit is closed, they go out at once, before the rows
    are written, so a delivery usually takes one insert in its final state (`fanout_send`), when
    one of its HUB_DELIVERY_MAX_IN_FLIGHT request slots is free. Deliveries of several
    integrations are written pending and listed in the result's `send_now`: the caller sends
    them after the commit, each integration in a thread and a transaction of its own
    (`deliveries_send_new`), so a destination that hangs holds up neither the others' sends
    nor their request slots.
    """
    db = store()
    result_send_now: dict[int, list] = {}
    sendable = [
        (integration, [i for i in items if i.status == Delivery.Status.PENDING])
        for integration, items in (groups.values() if send else ())
        if integration.outage_since is None
    ]
    sendable = [(integration, pending) for integration, pending in sendable if pending]
    if len(sendable) == 1:
        integration, pending = sendable[0]
        slot = db.send_slot(integration_id=integration.pk, slots=settings.HUB_DELIVERY_MAX_IN_FLIGHT)
        with slot as ok:
            if ok:
                fanout_send(integration, pending, now=now)
    else:
        result_send_now = {integration.pk: [i.id for i in pending] for integration, pending in sendable}
    new = [item for _, items in groups.values() for item in items]
    created = db.deliveries_insert(rows=new, now=now)
    # An integration whose circuit is open needs no sender for its new rows: its probe is
    # scheduled already (and the sweep enqueues every due probe). Senders enqueued for each chunk
    # would only flood the queue while it is down, ahead of the other destinations' tasks.
    open_circuits = {pk for pk, (integration, _) in groups.items() if integration.outage_since is not None}
    waiting = {
        n.integration_id
        for n in new
        if n.status == Delivery.Status.PENDING and n.integration_id not in open_circuits
    }
    result = FanoutResult(created, waiting)
    result.send_now = result_send_now
    return result


def deliveries_send_new(*, integration_id: int, ids: list) -> bool:
    """Send these new deliveries now (after their fan-out committed), in transactions of their
    own within the integration's request slots; True when some are left pending (no free slot, a
    retryable answer). The caller runs each integration's in a send thread of its own
    (`integrations.send_threads`), so a destination that hangs holds up neither the others' sends
    nor their request slots."""
    report = SendReport()
    while _send_batch(integration_id, report, only=ids, need_slot=True):
        pass
    return Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING).exists()


def integrations_due(*, now: datetime | None = None) -> list[int]:
    """Enabled integrations with a delivery due now (circuit closed) or a probe due (circuit open)."""
    now = now or timezone.now()
    due = Delivery.objects.filter(
        integration=OuterRef("pk"), status=Delivery.Status.PENDING, next_attempt_at__lte=now
    )
    closed = Integration.objects.filter(enabled=True, outage_since__isnull=True).filter(Exists(due))
    probing = Integration.objects.filter(enabled=True, outage_since__isnull=False, probe_at__lte=now)
    return sorted(set(closed.values_list("pk", flat=True)) | set(probing.values_list("pk", flat=True)))


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


def _excerpt(raw: bytes, limit: int) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")


_SECRET_HEADERS = {"authorization", "x-mantle-app-api-key", "kable-client-secret", "x-api-key"}


def _shown_headers(request) -> dict[str, str]:
    """The request's headers as the log shows them: credentials masked."""
    shown = {k: ("••••" if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.items()}
    if request.auth is not None:
        shown["Authorization"] = "Basic •••• (the write key)"
    return shown


@dataclass
class _Outcome:
    attempt: Attempt
    retry_after: float | None = None
    attention: str = ""


def _post(integration: Integration, request) -> _Outcome:
    connector = connector_for(integration.kind)
    attempt = Attempt(
        integration_id=integration.pk,
        created_at=timezone.now(),
        url=connector.redact(integration, request.url)[:300],
        request_bytes=len(request.body),
        request_headers=_shown_headers(request),
        request_excerpt=_excerpt(request.body, REQUEST_EXCERPT_BYTES),
    )
    out = _Outcome(attempt)
    try:
        response = outbound.post(
            request.url,
            data=request.body,
            headers=request.headers,
            auth=request.auth,
            timeout=settings.HUB_DELIVERY_TIMEOUT,
        )
    except outbound.OutboundRefused as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.FAILED,
            connector.redact(integration, f"refused: {exc}"),
        )
        out.attention = connector.redact(integration, f"The destination was refused: {exc}")
        return out
    except requests.Timeout as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.RETRY,
            connector.redact(integration, f"timeout: {exc}"),
        )
        return out
    except requests.RequestException as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.RETRY,
            connector.redact(integration, f"connection error: {exc}"),
        )
        return out
    attempt.status_code = response.status_code
    attempt.latency_ms = response.latency_ms
    attempt.response_excerpt = _excerpt(response.body, RESPONSE_EXCERPT_BYTES)
    attempt.outcome = connector.classify(response.status_code, response.body)
    if 300 <= response.status_code < 400:
        attempt.error = f"redirect to {response.headers.get('Location', '?')} not followed"
    elif response.status_code == 429:
        out.retry_after = _retry_after(response.headers.get("Retry-After"))
    if connector.needs_attention(response.status_code):
        out.attention = f"The destination answered {response.status_code}: check the credentials."
    return out


def _error_text(attempt: Attempt) -> str:
    return attempt.error or f"HTTP {attempt.status_code}: {attempt.response_excerpt[:200]}"


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


def _record(integration: Integration, out: _Outcome, rows: list[Claimed], report: SendReport) -> None:
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
            error=_error_text(attempt),
            now=now,
        )
        report.failed += len(rows)
    else:
        marks = _retry_marks(rows, _error_text(attempt), out.retry_after, now)
        db.mark_retry(marks=marks, attempt_id=attempt_id, status_code=attempt.status_code, now=now)
        for m in marks:
            if m.status == Delivery.Status.PENDING:
                report.retry += 1
            elif m.status == Delivery.Status.DEAD:
                report.dead += 1
            else:
                report.failed += 1
    _attention(integration, out)


def _batches(connector, integration: Integration, items: list, raw) -> tuple[list[list], list]:
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


def _oversize_error(length: int, limit: int) -> str:
    return f"message is {length} bytes, over the {limit}-byte limit per message: not sent"


def _attention(integration: Integration, out: _Outcome) -> None:
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


@dataclass
class _Posted:
    """What the network part of an inline send did: the requests' outcomes, batch by batch."""

    batches: list[list[NewDelivery]]
    oversize: list[NewDelivery]
    outs: list[_Outcome]


def _fanout_post(integration: Integration, items: list[NewDelivery]) -> _Posted:
    """Send new deliveries' requests (no database work: it may run in a thread of its own); stop
    at the first retryable failure (the rest stay pending)."""
    connector = connector_for(integration.kind)
    batches, oversize = _batches(connector, integration, items, lambda i: i.raw)
    outs: list[_Outcome] = []
    for batch in batches:
        request = connector.batch_request(
            integration=integration, messages=[i.raw for i in batch], action=batch[0].action
        )
        out = _post(integration, request)
        outs.append(out)
        if out.attempt.outcome == Attempt.Outcome.RETRY:
            break
    return _Posted(batches, oversize, outs)


def _fanout_record(integration: Integration, posted: _Posted, *, now: datetime) -> None:
    """Record an inline send: an attempt per request, each delivery's state from its answer (they
    are inserted afterwards, in the fan-out's transaction: a crash before its commit sends them
    again, under the same message ids). A retryable failure opens the circuit."""
    db = store()
    connector = connector_for(integration.kind)
    for item in posted.oversize:
        attempt = Attempt(
            integration_id=integration.pk,
            created_at=timezone.now(),
            url="",
            request_bytes=len(item.raw),
            request_excerpt=_excerpt(item.raw, REQUEST_EXCERPT_BYTES),
            error=_oversize_error(len(item.raw), connector.max_message_bytes),
            outcome=Attempt.Outcome.FAILED,
            delivery_ids=[str(item.id)],
            message_count=1,
        )
        item.status, item.attempts, item.last_error = Delivery.Status.FAILED, 1, attempt.error
        item.last_attempt_id = db.attempt_insert(attempt=attempt)
    for batch, out in zip(posted.batches, posted.outs, strict=False):
        out.attempt.delivery_ids = [str(i.id) for i in batch]
        out.attempt.message_count = len(batch)
        attempt_id = db.attempt_insert(attempt=out.attempt)
        outcome = out.attempt.outcome
        error = "" if outcome == Attempt.Outcome.DELIVERED else _error_text(out.attempt)
        for item in batch:
            item.attempts, item.last_attempt_id = 1, attempt_id
            item.last_status_code, item.last_error = out.attempt.status_code, error
            if outcome == Attempt.Outcome.DELIVERED:
                item.status, item.delivered_at = Delivery.Status.DELIVERED, now
            elif outcome == Attempt.Outcome.FAILED:
                item.status = Delivery.Status.FAILED
            else:
                delay = out.retry_after if out.retry_after is not None else backoff_delay(1)
                item.next_attempt_at = now + timedelta(seconds=delay)
        _attention(integration, out)
        if outcome == Attempt.Outcome.RETRY:
            _circuit_open(integration, out, timezone.now())


def fanout_send(integration: Integration, items: list[NewDelivery], *, now: datetime) -> None:
    """Send new deliveries at once, then record the requests (see `_fanout_record`)."""
    _fanout_record(integration, _fanout_post(integration, items), now=now)


def _fail_oversize(integration: Integration, row: Claimed, limit: int, report: SendReport) -> None:
    attempt = Attempt(
        integration_id=integration.pk,
        created_at=timezone.now(),
        url="",
        request_bytes=len(row.message),
        request_excerpt=_excerpt(row.message, REQUEST_EXCERPT_BYTES),
        error=_oversize_error(len(row.message), limit),
        outcome=Attempt.Outcome.FAILED,
    )
    _record(integration, _Outcome(attempt), [row], report)


def _circuit_open(integration: Integration, out: _Outcome, now: datetime) -> datetime:
    """Open (or keep open) the integration's circuit after a retryable failure; return the next probe."""
    wait = settings.HUB_DELIVERY_PROBE_SECONDS
    if out.retry_after is not None:
        wait = max(wait, out.retry_after)
    probe_at = now + timedelta(seconds=wait)
    Integration.objects.filter(pk=integration.pk).update(
        outage_since=integration.outage_since or now,
        outage_error=_error_text(out.attempt)[:300],
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
            last_error=f"retry window over during an outage, gave up: {_error_text(out.attempt)}"[:2000],
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
        batches, oversize = _batches(connector, integration, rows, lambda r: r.message)
        for row in oversize:
            _fail_oversize(integration, row, connector.max_message_bytes, report)
        if not batches:
            return True
        for batch in batches:
            request = connector.batch_request(
                integration=integration, messages=[r.message for r in batch], action=batch[0].action
            )
            out = _post(integration, request)
            out.attempt.probe = probing
            _record(integration, out, batch, report)
            report.requests += 1
            if out.attempt.outcome == Attempt.Outcome.RETRY:
                # The rest of the claim stays as it was (released with this transaction).
                if only is None or need_slot:
                    report.probe_at = _circuit_open(integration, out, timezone.now())
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


# --- Retention -----------------------------------------------------------------------------------


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
