"""Backfills: a destination gets the stored usage events, or the customers and their contacts,
of a time range, as a background job with progress (`Backfill` rows), resumable after a worker is
killed, never making a second delivery of an item: delivery ids come from the subscription and the
event, as when forwarding, or from the subscription and the customer's (contact's) version.

A customer goes as it is now, as the group call forwarding makes of a change, its contacts as
identify calls: `messageId` `customer-<row id>-<version>` (`contact-…`), the version being
the time of its last change in microseconds. A resumed chunk, or a second backfill over the same
customers, makes no second delivery; a customer changed since is sent once more, in its new version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from events.models import UsageEvent
from hub.errors import HubError
from hub.models import Contact, Customer, CustomerForward
from hub.raw_cursor import local_setting
from hub.services.customer_forwards import contact_snapshot, customer_snapshot

from .delivery_fanout import FanoutResult, deliveries_create
from .delivery_rows import NewDelivery
from .forwarding import (
    EVENT_FIELDS,
    contact_message,
    customer_message,
    event_delivery,
    item_delivery,
    subscriptions_of_apps,
)
from .models import Backfill, Integration, Subscription

CUSTOMER_KINDS = (Subscription.ItemKind.CUSTOMER, Subscription.ItemKind.CONTACT)


def _customers(app_ids: Iterable[int], since: datetime, until: datetime) -> QuerySet[Customer]:
    """The identified customers the hub got in [since, until) (placeholders, made by a usage event
    for a customer never identified, carry nothing to send)."""
    return Customer.objects.filter(
        app_id__in=app_ids, is_placeholder=False, created_at__gte=since, created_at__lt=until
    )


def backfill_start(
    *,
    integration: Integration,
    since: datetime,
    until: datetime,
    by: str = "",
    enqueue: bool = True,
    items: str = Backfill.Items.USAGE_EVENTS,
) -> Backfill:
    """Start sending the usage events of [since, until) of the destination's apps to it, or
    (`items="customers"`) the customers the hub got in that range with their contacts (by a
    worker; with `enqueue=False` the caller runs it with `backfill_run`)."""
    if items not in Backfill.Items.values:
        raise HubError(f"A backfill sends usage events or customers, not {items!r}.")
    if since >= until:
        raise HubError("The range must end after it starts.")
    if until > timezone.now() + timedelta(days=1):
        raise HubError("The range cannot end in the future.")
    customers = items == Backfill.Items.CUSTOMERS
    kinds = CUSTOMER_KINDS if customers else (Subscription.ItemKind.USAGE_EVENT,)
    if not integration.subscriptions.filter(enabled=True, item_kind__in=kinds).exists():
        what = "customers or contacts" if customers else "usage events"
        raise HubError(f"{integration.name} takes no {what}: turn a subscription on first.")
    if integration.backfills.filter(status=Backfill.Status.RUNNING, items=items).exists():
        raise HubError(
            f"A backfill of this destination's {Backfill.Items(items).label.lower()} is running already."
        )
    apps = list(integration.apps.values_list("pk", flat=True))
    if customers:
        total = _customers(apps, since, until).count()
    else:
        total = UsageEvent.objects.filter(app_id__in=apps, timestamp__gte=since, timestamp__lt=until).count()
    backfill = Backfill.objects.create(
        integration=integration, items=items, since=since, until=until, total=total, created_by=by
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(backfill.pk))
    return backfill


# integrations.tasks.backfill_run, asked for by name (the tasks module imports this one).
RUN_TASK = "integrations.backfill_run"


def _enqueue(backfill_id: int) -> None:
    from hub.celery import app as celery_app

    celery_app.send_task(RUN_TASK, args=[backfill_id])


def backfill_cancel(*, backfill: Backfill) -> None:
    """Stop a running backfill (what it queued already is still sent)."""
    Backfill.objects.filter(pk=backfill.pk, status=Backfill.Status.RUNNING).update(
        status=Backfill.Status.CANCELLED, updated_at=timezone.now()
    )


@contextmanager
def _sort_disabled() -> Iterator[None]:
    """PostgreSQL's planner without sorts for the statements run meanwhile (`local_setting`: it
    holds in the caller's transaction at most, and is put back before that ends). Elsewhere,
    nothing."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor, local_setting(cursor, "enable_sort", "off"):
        yield


_EVENT_OWN_FIELDS = [f for f in EVENT_FIELDS if not f.startswith("customer__")]
_CUSTOMER_FIELDS = [f.removeprefix("customer__") for f in EVENT_FIELDS if f.startswith("customer__")]


def _chunk(backfill: Backfill) -> list[dict]:
    """The next chunk of the backfill's events (EVENT_FIELDS), in (app, timestamp, id) order.

    Read in two steps that no statistics can turn into a scan of the whole range for every chunk
    (each chunk then cost as much as all the events left after it: 48 µs an event in bench
    .destinations, whose partitions were not analyzed yet): the chunk's events in their index's
    order through a Merge Append of the partitions (a sort disabled for that statement: with the
    partitions' row counts underestimated, the planner sorted everything left, then took the
    first rows), then their customers by primary key.
    """
    apps = sorted(backfill.integration.apps.values_list("pk", flat=True))
    for app_id in apps:
        if app_id < backfill.cursor_app_id:
            continue
        events = UsageEvent.objects.filter(
            app_id=app_id, timestamp__gte=backfill.since, timestamp__lt=backfill.until
        )
        if app_id == backfill.cursor_app_id and backfill.cursor_timestamp is not None:
            ts, pk = backfill.cursor_timestamp, backfill.cursor_event_pk
            # `timestamp >= ts` bounds the index scan; the OR alone would filter every event
            # before the cursor again for each chunk.
            events = events.filter(timestamp__gte=ts).filter(Q(timestamp__gt=ts) | Q(pk__gt=pk))
        page = events.order_by("timestamp", "id").values(*_EVENT_OWN_FIELDS, "customer_id")
        with _sort_disabled():
            rows = list(page[: settings.HUB_BACKFILL_CHUNK])
        if rows:
            _with_customers(rows)
            return rows
    return []


def _with_customers(rows: list[dict]) -> None:
    """Add each event's customer fields (`customer__...`), read by primary key. A customer merged
    away since the events were read (a placeholder: the merge moved its events) is looked up
    again through its events."""
    customers: dict[int, dict] = {}
    for _ in range(3):
        missing = {r["customer_id"] for r in rows} - customers.keys()
        if not missing:
            break
        customers.update(
            (c["id"], c) for c in Customer.objects.filter(pk__in=missing).values("id", *_CUSTOMER_FIELDS)
        )
        moved = [r["id"] for r in rows if r["customer_id"] not in customers]
        if moved:
            now_of = dict(UsageEvent.objects.filter(pk__in=moved).values_list("pk", "customer_id"))
            for row in rows:
                row["customer_id"] = now_of.get(row["id"], row["customer_id"])
    for row in rows:
        customer = customers[row.pop("customer_id")]
        row.update({f"customer__{f}": customer[f] for f in _CUSTOMER_FIELDS})


def backfill_step(*, backfill_id: int) -> tuple[bool, FanoutResult]:
    """Walk one chunk of a running backfill in one transaction: its deliveries (pending, for the
    senders) and the cursor past it commit together. Returns (more to do, what was created); a
    backfill another worker holds is left to it (False)."""
    with transaction.atomic():
        # The backfill's row only: a lock on its integration's too would be skipped whenever a
        # sender holds that row's key-share lock (an attempt's foreign key), and the backfill
        # would stop as if another worker held it, until the sweep restarts it a minute later.
        backfill = (
            Backfill.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("integration")
            .filter(pk=backfill_id, status=Backfill.Status.RUNNING)
            .first()
        )
        if backfill is None:
            return False, FanoutResult()
        chunk = _next_chunk(backfill)
        now = timezone.now()
        if chunk is None:
            Backfill.objects.filter(pk=backfill.pk).update(status=Backfill.Status.DONE, updated_at=now)
            return False, FanoutResult()
        size, items, last = chunk
        groups = {backfill.integration_id: (backfill.integration, items)} if items else {}
        result = deliveries_create(groups, now=now, send=False, may_exist=True) if groups else FanoutResult()
        Backfill.objects.filter(pk=backfill.pk).update(
            done=backfill.done + size,
            queued=backfill.queued + sum(result.values()),
            cursor_app_id=last.app_id,
            cursor_timestamp=last.timestamp,
            cursor_event_pk=last.pk,
            updated_at=now,
        )
    return True, result


@dataclass(frozen=True)
class _Cursor:
    """Where a backfill's next chunk starts: past this row (an event's, or a customer's: no timestamp)."""

    app_id: int
    timestamp: datetime | None
    pk: int


def _next_chunk(backfill: Backfill) -> tuple[int, list[NewDelivery], _Cursor] | None:
    """The backfill's next chunk: how many items it has, their deliveries and the cursor past it;
    None when no item is left."""
    if backfill.items == Backfill.Items.CUSTOMERS:
        customers = _customer_chunk(backfill)
        if not customers:
            return None
        last = customers[-1]
        return len(customers), _customer_deliveries(backfill, customers), _Cursor(last.app_id, None, last.pk)
    events = _chunk(backfill)
    if not events:
        return None
    row = events[-1]
    return (
        len(events),
        _event_deliveries(backfill, events),
        _Cursor(row["app_id"], row["timestamp"], row["id"]),
    )


def _event_deliveries(backfill: Backfill, rows: list[dict]) -> list[NewDelivery]:
    subscriptions = subscriptions_of_apps({r["app_id"] for r in rows})
    items: list[NewDelivery] = []
    for event in rows:
        for subscription, compiled in subscriptions.get(event["app_id"], ()):
            if subscription.integration_id != backfill.integration_id:
                continue
            new = event_delivery(subscription, compiled, event)
            if new is not None:
                items.append(new)
    return items


def _customer_chunk(backfill: Backfill) -> list[Customer]:
    apps = sorted(backfill.integration.apps.values_list("pk", flat=True))
    for app_id in apps:
        if app_id < backfill.cursor_app_id:
            continue
        customers = _customers([app_id], backfill.since, backfill.until)
        if app_id == backfill.cursor_app_id:
            customers = customers.filter(pk__gt=backfill.cursor_event_pk)
        rows = list(customers.order_by("pk")[: settings.HUB_BACKFILL_CHUNK])
        if rows:
            return rows
    return []


def _version(*changed: datetime) -> int:
    """A customer's (contact's) version: its last change, in microseconds since the epoch."""
    latest = max(changed)
    return int(latest.timestamp()) * 1_000_000 + latest.microsecond


def _customer_deliveries(backfill: Backfill, customers: list[Customer]) -> list[NewDelivery]:
    """Each customer as the group call forwarding makes of a change, and each of its contacts as
    an identify call, for the destination's customer and contact subscriptions; each delivery's
    id from the subscription and the item's version, so it is made once per version."""
    app_id = customers[0].app_id  # a chunk is of one app
    subscriptions = [
        (s, compiled)
        for s, compiled in subscriptions_of_apps({app_id}, CUSTOMER_KINDS).get(app_id, ())
        if s.integration_id == backfill.integration_id
    ]
    takes = {s.item_kind for s, _ in subscriptions}
    contacts: dict[int, list[Contact]] = {}
    if Subscription.ItemKind.CONTACT in takes:
        for contact in Contact.objects.filter(customer__in=customers).order_by("pk"):
            contacts.setdefault(contact.customer_id, []).append(contact)
    items: list[NewDelivery] = []

    def offer(kind: str, key: str, snapshot: dict, at: datetime) -> None:
        # The view forwarding makes of a change (`CustomerForward`, not saved), under this version's id.
        message_of = customer_message if kind == Subscription.ItemKind.CUSTOMER else contact_message
        message = message_of(CustomerForward(kind=kind, snapshot=snapshot, created_at=at))
        message["messageId"] = f"{kind}-{key}"
        for subscription, compiled in subscriptions:
            if subscription.item_kind == kind:
                new = item_delivery(subscription, compiled, message, item_kind=kind, item_id=f"b{key}")
                if new is not None:
                    items.append(new)

    for customer in customers:
        if Subscription.ItemKind.CUSTOMER in takes:
            offer("customer", f"{customer.pk}-{_version(customer.updated_at)}", customer_snapshot(customer),
                  customer.updated_at)  # fmt: skip
        for contact in contacts.get(customer.pk, ()):
            at = max(contact.updated_at, customer.updated_at)
            offer("contact", f"{contact.pk}-{_version(at)}", contact_snapshot(contact, customer), at)
    return items


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
