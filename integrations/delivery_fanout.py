"""The delivery engine's fan-out: items → Delivery rows with their message rendered once and
stored, in the caller's transaction; sent at once before the rows are written (one insert in
their final state), one integration's requests in the fan-out's own thread, several integrations'
each in a send thread; what a busy or slow destination cannot take now is left for senders right
after the commit (see `deliveries_create`). Sending and recording later tries is
`integrations.delivery`."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import outbound, send_threads
from .connectors import connector_for
from .delivery import (
    SendReport,
    attempt_record,
    attention_note,
    backoff_delay,
    batches_split,
    circuit_open,
    oversize_error,
    oversize_fail,
)
from .delivery_http import REQUEST_EXCERPT_BYTES, Outcome, error_text, excerpt, request_post
from .delivery_rows import NewDelivery, activity_delivery
from .delivery_store import store
from .models import Attempt, Delivery, Integration

logger = logging.getLogger(__name__)


def _activity_links(app_ids: set[int]) -> dict[int, list[tuple[Integration, set[str]]]]:
    """{app id: [(enabled integration of the app, the activity kinds it sends)]}."""
    by_app: dict[int, list[tuple[Integration, set[str]]]] = defaultdict(list)
    # A raw query: a small fan-out (a few activities) runs this once per task, and building and
    # compiling the ORM's join cost a third of such a task's CPU. The model's converters still
    # apply (the encrypted write key).
    through = Integration.apps.through._meta
    app_column = through.get_field("app").column
    integration_column = through.get_field("integration").column
    placeholders = ", ".join(["%s"] * len(app_ids))
    sql = (
        f"SELECT i.*, l.{app_column} AS link_app_id FROM {through.db_table} l "  # noqa: S608 - names, %s
        f"JOIN {Integration._meta.db_table} i ON i.id = l.{integration_column} "
        f"WHERE l.{app_column} IN ({placeholders}) AND i.enabled"
    )
    for integration in Integration.objects.raw(sql, sorted(app_ids)):
        by_app[integration.link_app_id].append((integration, set(integration.activities or ())))
    return by_app


# A chunk of at least this many new deliveries for one integration is a backlog's: it waits up to
# HUB_DELIVERY_SLOT_WAIT for a request slot. A smaller one (a few activities just recorded) never
# waits: it is written pending for a sender when the slots are taken.
BACKLOG_CHUNK = 500


class FanoutResult(dict):
    """{integration id: new deliveries}, and `waiting`: the integrations left with pending ones."""

    def __init__(self, created: dict[int, int] | None = None, waiting: set[int] | None = None):
        super().__init__(created or {})
        self.waiting = waiting or set()
        self.batches = 0  # the forward batches (or customer changes) taken
        self.more = False  # the chunk was full: more may be waiting
        self.send_now: dict[int, list] = {}  # pending deliveries to send after the commit
        # Integrations whose new deliveries all went out at once, before the insert (a request
        # slot was free): after the commit, what earlier fan-outs left them goes too.
        self.sent_inline: set[int] = set()


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
        # A backlog (no ids) is split over at most HUB_DELIVERY_PARALLEL fan-outs at once: more
        # would only wait for the destination's request slots (or write their deliveries
        # pending, for senders to claim and update: three writes a delivery instead of one).
        if activity_ids is None:
            with db.fanout_slot(slots=max(1, settings.HUB_DELIVERY_PARALLEL)) as ok:
                if not ok:
                    return FanoutResult()
        now = timezone.now()
        rows = db.activities_claim(ids=activity_ids, limit=limit, now=now)
        if not rows:
            return FanoutResult()
        groups: dict[int, tuple[Integration, list[NewDelivery]]] = {}
        # Per app, what each of its integrations needs, looked up once a fan-out, not per activity:
        # (integration, its kinds, its connector's renderer, its group's list).
        links = {
            app_id: [
                (integration, kinds, connector_for(integration.kind).activity_message,
                 groups.setdefault(integration.pk, (integration, []))[1])
                for integration, kinds in targets
            ]
            for app_id, targets in _activity_links({r.app_id for r in rows}).items()
        }  # fmt: skip
        for row in rows:
            for integration, kinds, render, group in links.get(row.app_id, ()):
                if row.kind not in kinds:
                    continue
                raw = orjson.dumps(render(integration=integration, activity=row))
                group.append(activity_delivery(integration.pk, row.id, raw))
        # An integration none of whose kinds came up has no group.
        groups = {pk: group for pk, group in groups.items() if group[1]}
        result = deliveries_create(groups, now=now, send=send)
        # Full by its activities, not its deliveries: a chunk of activities no integration takes
        # makes none, and the next chunk may still make many.
        result.more = len(rows) >= limit
        return result


def activities_backlog(*, at_least: int) -> bool:
    """Whether at least this many activities wait for their fan-out (a backlog to split)."""
    return store().activities_waiting(limit=at_least) >= at_least


def deliveries_create(
    groups: dict[int, tuple[Integration, list[NewDelivery]]],
    *,
    now: datetime,
    send: bool,
    may_exist: bool = False,
) -> FanoutResult:
    """Insert new deliveries, grouped by integration, in the caller's transaction (a fan-out's).

    With `send` and one integration whose circuit is closed, they go out at once, before the rows
    are written, so a delivery usually takes one insert in its final state, when one of its
    HUB_DELIVERY_MAX_IN_FLIGHT request slots is free (a backlog's chunk waits for one up to
    HUB_DELIVERY_SLOT_WAIT, and holds it while its requests are in flight, not through the
    writes after them). Deliveries of several integrations go out at once as well, each
    integration's in a send thread holding one of its slots (`_fanout_post_several`); those of
    an integration slow in this process, or without a free slot, are written pending and listed
    in the result's `send_now`: the caller sends them after the commit, each integration in a
    thread and a transaction of its own (`deliveries_send_new`), so a destination that hangs
    holds up neither the others' sends nor their request slots. A delivery that exists already
    is left as it is; `may_exist` says some well may (a backfill's), which skips the plain
    insert tried first.
    """
    db = store()
    result_send_now: dict[int, list] = {}
    sent_inline: set[int] = set()
    sendable = [
        (integration, [i for i in items if i.status == Delivery.Status.PENDING])
        for integration, items in (groups.values() if send else ())
        if integration.outage_since is None
    ]
    sendable = [(integration, pending) for integration, pending in sendable if pending]
    if len(sendable) == 1:
        integration, pending = sendable[0]
        slots = settings.HUB_DELIVERY_MAX_IN_FLIGHT
        if len(pending) >= BACKLOG_CHUNK:
            # A backlog's chunk waits a little for a request slot: sent now, its deliveries take
            # one insert each in their final state; written pending, a sender claims and updates
            # them. Its slot covers its requests in flight only: the next chunk's requests need
            # not wait for this one's writes and commit.
            slot = db.request_slot(
                integration_id=integration.pk, slots=slots, wait=settings.HUB_DELIVERY_SLOT_WAIT
            )
        else:
            # A few new activities: their writes are short, and a savepoint would cost two more
            # round trips on the path of every commit's fan-out.
            slot = db.send_slot(integration_id=integration.pk, slots=slots)
        with slot as ok:
            posted = _fanout_post(integration, pending) if ok else None
        if posted is not None:
            _fanout_record(integration, posted, now=now)
            sent_inline = _all_went(integration, posted)
    elif sendable:
        result_send_now, sent_inline = _fanout_post_several(sendable, now=now)
    new = [item for _, items in groups.values() for item in items]
    created = db.deliveries_insert(rows=new, now=now, may_exist=may_exist)
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
    result.sent_inline = sent_inline
    return result


class _Inline:
    """One destination's part of a several-destination inline send, between its send thread and
    the fan-out. `state` moves under `lock`: "new" (the thread has no slot yet), then "posting"
    (its requests are out) and "posted" (`posted` holds the answers), or "dropped" (no slot, or
    the fan-out stopped waiting before the thread had one: the rows go to the senders). When the
    fan-out stops waiting while the thread is "posting", `left` makes the thread record the
    answers itself, after the fan-out's commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = "new"
        self.posted: _Posted | None = None
        self.left = False
        self.committed = threading.Event()


# How long a send thread whose answers came after the fan-out stopped waiting waits for that
# fan-out's commit (its deliveries' rows: a fan-out commits within moments of its sends); past it
# (the fan-out rolled back, or the process is going) it leaves them, and frees its slot: the rows
# are made and sent again, under the same ids.
LATE_COMMIT_WAIT = 10.0


def _inline_job(integration: Integration, items: list[NewDelivery], box: _Inline) -> None:
    """Send one destination's part in a send thread, holding one of its request slots in a
    transaction of the thread's own connection: for as long as its requests are in flight and,
    when the fan-out stopped waiting for them, until their answers are recorded (`_late_record`),
    so that a destination that hangs never has more requests out than its slots, whatever number
    of fan-outs gave up on it. An error drops the part (its rows go to the senders, under the
    same ids) rather than fail the fan-out of every destination."""
    try:
        with (
            transaction.atomic(),
            store().send_slot(integration_id=integration.pk, slots=settings.HUB_DELIVERY_MAX_IN_FLIGHT) as ok,
        ):
            with box.lock:
                if box.state != "new" or not ok:
                    box.state = "dropped"
                    return
                box.state = "posting"
            posted = _fanout_post(integration, items)
            with box.lock:
                if box.state == "posting":  # not dropped by an error path of the fan-out
                    box.posted, box.state = posted, "posted"
                if not box.left:
                    return
            if box.committed.wait(LATE_COMMIT_WAIT):
                _late_record(integration, posted)
    except Exception:
        logger.exception("inline send to integration %s failed; its deliveries go to senders", integration.pk)
        with box.lock:
            if box.state != "posted" or box.left:
                box.state = "dropped"


def _late_record(integration: Integration, posted: _Posted) -> None:
    """Record answers that came after the fan-out stopped waiting, as a sender would: the rows,
    written pending under a lease (`_lease_end`), are claimed by id, so that any a sender took
    meanwhile (the lease over, or the circuit closed by a probe, which makes every waiting row due)
    are left to it; the requests are shown in the delivery log either way."""
    db = store()
    report = SendReport()
    connector = connector_for(integration.kind)
    for item in posted.oversize:
        for row in db.claim(integration_id=integration.pk, limit=1, due_by=None, only=[item.id]):
            oversize_fail(integration, row, connector.max_message_bytes, report)
    for batch, out in zip(posted.batches, posted.outs, strict=False):
        ids = [i.id for i in batch]
        rows = db.claim(integration_id=integration.pk, limit=len(batch), due_by=None, only=ids)
        if not rows:
            out.attempt.delivery_ids, out.attempt.message_count = [str(i) for i in ids], len(ids)
            db.attempt_insert(attempt=out.attempt)
            continue
        attempt_record(integration, out, rows, report)
        if out.attempt.outcome == Attempt.Outcome.RETRY:
            circuit_open(integration, out, timezone.now())


def _lease_end(integration: Integration, pending: list[NewDelivery]) -> datetime:
    """When rows whose requests may still be in flight become due for the senders: once every
    request of theirs has had its connect and read timeouts, and their thread its wait for the
    fan-out's commit."""
    batches, _ = batches_split(connector_for(integration.kind), integration, pending, lambda i: i.raw)
    timeout = settings.HUB_DELIVERY_TIMEOUT
    per_request = min(timeout, outbound.CONNECT_TIMEOUT) + timeout
    return timezone.now() + timedelta(seconds=per_request * max(1, len(batches)) + LATE_COMMIT_WAIT + 5)


def _all_went(integration: Integration, posted: _Posted) -> set[int]:
    """{the integration} when every request of an inline send was answered without a retry."""
    went = all(out.attempt.outcome != Attempt.Outcome.RETRY for out in posted.outs)
    return {integration.pk} if went and len(posted.outs) == len(posted.batches) else set()


def _fanout_post_several(
    sendable: list[tuple[Integration, list[NewDelivery]]], *, now: datetime
) -> tuple[dict[int, list], set[int]]:
    """Send several destinations' new deliveries at once, each in a send thread that holds one
    of the destination's request slots (`_inline_job`): those answered within their destination's
    patience (`send_threads`) are recorded here, so that each of their deliveries takes one insert
    in its final state, as with one destination. A destination slow in this process, or without a
    free slot, has its deliveries written pending and returned, {integration id: delivery ids},
    for the senders after the commit (with the integrations whose deliveries all went). One
    that outlasts its patience now (it counts as slow from then on) has them written pending
    under a lease, and its thread records its answers after the commit: a destination that hangs
    holds the others' deliveries for its patience (a few times its usual answer time), once per
    process."""
    later: dict[int, list] = {}
    went: set[int] = set()
    jobs, boxes = [], []
    for integration, pending in sendable:
        if send_threads.is_slow(integration.pk):
            later[integration.pk] = [i.id for i in pending]
            continue
        box = _Inline()
        boxes.append((integration, pending, box))
        jobs.append(partial(_inline_job, integration, pending, box))
    try:
        send_threads.run_patiently(jobs)
    finally:
        # Whatever happened, a part whose thread has no slot yet is dropped: it sends nothing for
        # a fan-out that may not commit.
        for _, _, box in boxes:
            with box.lock:
                if box.state == "new":
                    box.state = "dropped"
    for integration, pending, box in boxes:
        with box.lock:
            state, posted = box.state, box.posted
            box.left = state == "posting"
        if state == "dropped":
            later[integration.pk] = [i.id for i in pending]
        elif state == "posted":
            _fanout_record(integration, posted, now=now)
            went |= _all_went(integration, posted)
        else:
            lease_end = _lease_end(integration, pending)
            for item in pending:
                item.next_attempt_at = lease_end
            transaction.on_commit(box.committed.set, robust=True)
    return later, went


@dataclass
class _Posted:
    """What the network part of an inline send did: the requests' outcomes, batch by batch."""

    batches: list[list[NewDelivery]]
    oversize: list[NewDelivery]
    outs: list[Outcome]


def _fanout_post(integration: Integration, items: list[NewDelivery]) -> _Posted:
    """Send new deliveries' requests (no database work: it may run in a thread of its own); stop
    at the first retryable failure (the rest stay pending)."""
    connector = connector_for(integration.kind)
    batches, oversize = batches_split(connector, integration, items, lambda i: i.raw)
    outs: list[Outcome] = []
    for batch in batches:
        request = connector.batch_request(
            integration=integration, messages=[i.raw for i in batch], action=batch[0].action
        )
        out = request_post(integration, request)
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
            request_excerpt=excerpt(item.raw, REQUEST_EXCERPT_BYTES),
            error=oversize_error(len(item.raw), connector.max_message_bytes),
            outcome=Attempt.Outcome.FAILED,
            delivery_ids=[str(item.id)],
            message_count=1,
        )
        item.status, item.attempts, item.last_error = Delivery.Status.FAILED, 1, attempt.error
        item.last_attempt_id = db.attempt_insert(attempt=attempt)
    for batch, out in zip(posted.batches, posted.outs, strict=False):
        # UUIDs: the insert's JSON encoder writes them in C (str() of each was a share of this loop).
        out.attempt.delivery_ids = [i.id for i in batch]
        out.attempt.message_count = len(batch)
        attempt_id = db.attempt_insert(attempt=out.attempt)
        outcome = out.attempt.outcome
        error = "" if outcome == Attempt.Outcome.DELIVERED else error_text(out.attempt)
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
        attention_note(integration, out)
        if outcome == Attempt.Outcome.RETRY:
            circuit_open(integration, out, timezone.now())
