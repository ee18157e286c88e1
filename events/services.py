"""Write path of usage events: validate all, resolve customers, store each event exactly once.

Every wire format (Mantle, Metronome, Kable, Segment mappings) ends in `usage_events_ingest`.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from hub.customers import customer_ids_resolve, reference_cache_clear
from hub.errors import HubError, PayloadTooLarge
from hub.models import App, Customer
from hub.raw_cursor import raw_cursor
from hub.task_coalescing import CoalescedTask
from hub.timestamps import parse_timestamp

from .metrics.rollups import rollups_enqueue
from .models import ForwardBatch, RollupBatch, UsageEvent

_MAX_TEXT = 255


@dataclass(frozen=True)
class EventError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidEvents(HubError):
    """One or more events are invalid; nothing was stored."""

    def __init__(self, errors: list[EventError]):
        self.errors = errors
        n = len({e.index for e in errors})
        super().__init__(f"{n} invalid event(s); nothing was stored.")

    def body(self) -> dict:
        return {"error": str(self), "errors": [e.as_dict() for e in self.errors]}


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_ids: list[str] = field(default_factory=list)
    stored_ids: frozenset[str] = frozenset()  # the event ids stored now (the others were duplicates)


@dataclass(frozen=True)
class EventInput:
    """A validated event, ready to store."""

    event_id: str
    event_name: str
    customer_ref: str | None
    timestamp: datetime
    properties_json: str


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def usage_event_validate(
    raw: Any, *, index: int, now: datetime, need_customer: bool, errors: list[EventError]
) -> EventInput | None:
    """Validate one Mantle-shaped event (camelCase or snake_case keys); collect errors."""
    if not isinstance(raw, dict):
        errors.append(EventError(index, "", "each event must be a JSON object"))
        return None
    before = len(errors)
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        errors.append(EventError(index, "properties", "must be a JSON object"))
        properties = {}
    properties_json = orjson.dumps(properties)
    # The serialized event is its properties plus a few short fields: count those without
    # serializing the whole event a second time.
    size = len(properties_json) + sum(len(str(v)) + len(k) + 6 for k, v in raw.items() if k != "properties")
    if size > settings.HUB_USAGE_EVENT_MAX_BYTES:
        raise PayloadTooLarge(
            f"Event {index} is {size} bytes; at most {settings.HUB_USAGE_EVENT_MAX_BYTES} are allowed."
        )

    name_raw = raw.get("eventName", raw.get("event_name"))
    name = _text(name_raw)
    if name is None:
        errors.append(EventError(index, "eventName", "is required (a non-empty string)"))
    elif len(name) > _MAX_TEXT:
        errors.append(EventError(index, "eventName", f"has at most {_MAX_TEXT} characters"))

    id_raw = raw.get("eventId", raw.get("event_id"))
    event_id = _text(id_raw)
    if id_raw is not None and event_id is None:
        errors.append(EventError(index, "eventId", "must be a non-empty string"))
    elif event_id is not None and len(event_id) > _MAX_TEXT:
        errors.append(EventError(index, "eventId", f"has at most {_MAX_TEXT} characters"))

    cust_raw = raw.get("customerId", raw.get("customer_id"))
    customer_ref = _text(cust_raw)
    if cust_raw is not None and customer_ref is None:
        errors.append(EventError(index, "customerId", "must be a non-empty string"))
    elif customer_ref is None and need_customer:
        errors.append(EventError(index, "customerId", "is required with an API key"))
    elif customer_ref is not None and len(customer_ref) > _MAX_TEXT:
        errors.append(EventError(index, "customerId", f"has at most {_MAX_TEXT} characters"))

    try:
        timestamp = parse_timestamp(raw.get("timestamp"), now=now)
    except ValueError as exc:
        errors.append(EventError(index, "timestamp", str(exc)))
        timestamp = None
    else:
        future = timedelta(seconds=settings.HUB_USAGE_EVENT_MAX_FUTURE_SECONDS)
        if timestamp > now + future:
            errors.append(EventError(index, "timestamp", "is more than 24 hours in the future"))

    if len(errors) > before:
        return None
    return EventInput(
        event_id=event_id or uuid.uuid4().hex,
        event_name=name,
        customer_ref=customer_ref,
        timestamp=timestamp,
        properties_json=properties_json.decode(),
    )


def usage_events_validate(
    raw_events: list[Any], *, customer: Customer | None = None, now: datetime | None = None
) -> list[EventInput]:
    """Validate every event; raise InvalidEvents listing each bad one, or return them all."""
    now = now or timezone.now()
    errors: list[EventError] = []
    validated = [
        usage_event_validate(raw, index=i, now=now, need_customer=customer is None, errors=errors)
        for i, raw in enumerate(raw_events)
    ]
    if errors:
        raise InvalidEvents(errors)
    return validated  # type: ignore[return-value]


_COLUMNS = "(app_id, customer_id, event_id, event_name, timestamp, properties, received_at)"
# PostgreSQL: one statement stores the events and the batch of their new ids for the rollups, so
# both commit together whatever the transaction; rows arrive as arrays (one prepared statement
# for any batch size), in the order given.
# Arrays are sent in binary (%b): psycopg escapes every element of a text-format array in
# Python, several times slower for JSON documents (and formats each timestamp as text).
_INSERT_PG = (
    f"WITH ins AS (INSERT INTO events_usageevent {_COLUMNS} "  # noqa: S608 (constants)
    "SELECT %s, c, i, n, t, p, %s FROM unnest(%b::bigint[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::text[]::jsonb[]) AS u(c, i, n, t, p) "
    "ON CONFLICT (app_id, event_id) DO NOTHING RETURNING id, event_id), "
    "batch AS (INSERT INTO events_rollupbatch (app_id, event_ids, created_at) "
    "SELECT %s, to_jsonb(array_agg(id)), %s FROM ins HAVING count(*) > 0), "
    # Read in this statement, so an app whose destinations subscribed a moment ago is seen.
    "forward AS (INSERT INTO events_forwardbatch (app_id, event_ids, created_at) "
    "SELECT %s, to_jsonb(array_agg(id)), %s FROM ins "
    "WHERE EXISTS (SELECT 1 FROM hub_app WHERE id = %s AND forward_usage_events) HAVING count(*) > 0 "
    "RETURNING id) "
    "SELECT event_id, EXISTS (SELECT 1 FROM forward) FROM ins"
)
_VALUES_ROW = "(%s, %s, %s, %s, %s, %s, %s)"
FORWARD_TASK = "integrations.usage_events_forward"
# A tenth of a second: under load one forward task takes the events of many requests.
forward_enqueue = CoalescedTask(FORWARD_TASK, seconds=0.1)
_SINGLE_STATEMENT_ROWS = 20
_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def usage_events_store(
    *, app: App, events: list[EventInput], customer: Customer | None = None
) -> IngestResult:
    """Store validated events once each (in one transaction); count accepted and duplicates.

    With `customer` (a customer token was used) every event belongs to it, and an event naming
    another customer is refused.
    """
    if not events:
        return IngestResult(accepted=0, duplicates=0)
    unique: dict[str, EventInput] = {}
    for e in events:
        unique.setdefault(e.event_id, e)  # the first of a repeated id wins
    # Rows go in event-id order: concurrent batches sharing ids then wait for each other in the
    # same order, never in a cycle (a deadlock).
    ordered = [unique[k] for k in sorted(unique)]
    use_cache = True
    for attempt in range(3):
        try:
            stored = _store_once(app, events, ordered, customer, use_cache=use_cache)
            break
        except IntegrityError:
            if attempt == 2:
                raise
            # A cached customer id went stale (a placeholder merged away): resolve afresh.
            reference_cache_clear()
            use_cache = False
        except OperationalError as exc:
            # Deadlocks and serialization failures are transient: PostgreSQL rolled back, retry.
            if attempt == 2 or getattr(exc.__cause__, "sqlstate", None) not in _RETRYABLE_SQLSTATES:
                raise
    return IngestResult(
        accepted=len(stored),
        duplicates=len(events) - len(stored),
        event_ids=list(unique.keys()),
        stored_ids=frozenset(stored),
    )


def _store_once(
    app: App,
    events: list[EventInput],
    unique: list[EventInput],
    customer: Customer | None,
    *,
    use_cache: bool,
) -> list[str]:
    # A few rows go in one INSERT statement, atomic by itself (no BEGIN/COMMIT round trips);
    # a batch goes in one transaction of prepared inserts.
    single_statement = len(unique) <= _SINGLE_STATEMENT_ROWS
    with nullcontext() if single_statement else transaction.atomic():
        refs = {e.customer_ref for e in events if e.customer_ref}
        resolved = customer_ids_resolve(app=app, references=refs, use_cache=use_cache) if refs else {}
        if customer is not None:
            wrong = [
                i for i, e in enumerate(events) if e.customer_ref and resolved[e.customer_ref] != customer.pk
            ]
            if wrong:
                raise InvalidEvents(
                    [EventError(i, "customerId", "names another customer than the token's") for i in wrong]
                )
        received_at = timezone.now()
        rows = [
            (
                app.pk,
                resolved[e.customer_ref] if e.customer_ref else customer.pk,
                e.event_id,
                e.event_name,
                e.timestamp,
                e.properties_json,
                received_at,
            )
            for e in unique
        ]
        return _insert_rows(rows)


def _insert_rows(rows: list[tuple]) -> list[str]:
    """INSERT ... ON CONFLICT DO NOTHING every row, with the rollup batch of the new ones; the event
    ids stored (the others were there already)."""
    app_pk, received_at = rows[0][0], rows[0][6]
    if connection.vendor == "postgresql":
        with raw_cursor() as cursor:
            cursor.execute(
                _INSERT_PG,
                [
                    app_pk, received_at, [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                    [r[4] for r in rows], [r[5] for r in rows], app_pk, received_at,
                    app_pk, received_at, app_pk,
                ],
            )  # fmt: skip
            fetched = cursor.fetchall()
            stored = [r[0] for r in fetched]
            forward = bool(fetched) and fetched[0][1]
    else:
        forward = False
        with transaction.atomic(), raw_cursor() as cursor:
            ids, stored = [], []
            for i in range(0, len(rows), _SINGLE_STATEMENT_ROWS):
                part = rows[i : i + _SINGLE_STATEMENT_ROWS]
                values = ", ".join([_VALUES_ROW] * len(part))
                cursor.execute(
                    f"INSERT INTO events_usageevent {_COLUMNS} VALUES {values} "  # noqa: S608
                    "ON CONFLICT (app_id, event_id) DO NOTHING RETURNING id, event_id",
                    [v for row in part for v in row],
                )
                for pk, event_id in cursor.fetchall():
                    ids.append(pk)
                    stored.append(event_id)
            if ids:
                RollupBatch.objects.create(app_id=app_pk, event_ids=ids, created_at=received_at)
                forward = App.objects.filter(pk=app_pk, forward_usage_events=True).exists()
                if forward:
                    ForwardBatch.objects.create(app_id=app_pk, event_ids=ids, created_at=received_at)
    if stored:
        transaction.on_commit(lambda: rollups_enqueue(app_pk))
    if forward:
        # The integrations' forwarder, by name (events does not import integrations).
        transaction.on_commit(forward_enqueue)
    return stored


def usage_events_ingest(*, app: App, raw_events: list[Any], customer: Customer | None = None) -> IngestResult:
    """Validate all Mantle-shaped events (all or nothing) and store each exactly once."""
    if len(raw_events) > settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST:
        raise PayloadTooLarge(
            f"At most {settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST} events per request "
            f"({len(raw_events)} sent)."
        )
    validated = usage_events_validate(raw_events, customer=customer)
    return usage_events_store(app=app, events=validated, customer=customer)


__all__ = [
    "EventError",
    "EventInput",
    "IngestResult",
    "InvalidEvents",
    "UsageEvent",
    "parse_timestamp",
    "usage_events_ingest",
    "usage_events_store",
    "usage_events_validate",
]
