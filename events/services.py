"""Write path of usage events: validate all, resolve customers, store each event exactly once.

Every wire format (Mantle, Metronome, Kable, Segment mappings) ends in `usage_events_ingest`.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from hub.errors import HubError, PayloadTooLarge
from hub.models import App, Customer
from hub.services.customer_refs import customer_ids_resolve, reference_cache_clear
from hub.task_coalescing import CoalescedTask
from hub.timestamps import parse_timestamp

from .event_store import EventRow, usage_event_store
from .metrics.rollups import rollups_enqueue
from .models import UsageEvent

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


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def usage_event_validate(
    raw: object, *, index: int, now: datetime, need_customer: bool, errors: list[EventError]
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

    timestamp: datetime | None = None
    try:
        timestamp = parse_timestamp(raw.get("timestamp"), now=now)
    except ValueError as exc:
        errors.append(EventError(index, "timestamp", str(exc)))
    else:
        future = timedelta(seconds=settings.HUB_USAGE_EVENT_MAX_FUTURE_SECONDS)
        if timestamp > now + future:
            errors.append(EventError(index, "timestamp", "is more than 24 hours in the future"))

    # A missing name or timestamp was recorded as an error above.
    if len(errors) > before or name is None or timestamp is None:
        return None
    return EventInput(
        event_id=event_id or uuid.uuid4().hex,
        event_name=name,
        customer_ref=customer_ref,
        timestamp=timestamp,
        properties_json=properties_json.decode(),
    )


def usage_events_validate(
    raw_events: list[object], *, customer: Customer | None = None, now: datetime | None = None
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


FORWARD_TASK = "integrations.usage_events_forward"
# A tenth of a second: under load one forward task takes the events of many requests.
forward_enqueue = CoalescedTask(FORWARD_TASK, seconds=0.1)
_SINGLE_STATEMENT_ROWS = 20  # a batch this small is one statement, atomic by itself
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
                resolved[e.customer_ref] if e.customer_ref else _token_customer_pk(customer),
                e.event_id,
                e.event_name,
                e.timestamp,
                e.properties_json,
                received_at,
            )
            for e in unique
        ]
        return _insert_rows(rows)


def _token_customer_pk(customer: Customer | None) -> int:
    """The customer of an event without customerId: the customer token's (validation refuses such
    an event when an API key was used, so there is one)."""
    if customer is None:
        raise HubError("customerId is required with an API key.")
    return customer.pk


def _insert_rows(rows: list[EventRow]) -> list[str]:
    """Store the rows once each, with the rollup (and forward) batch of the new ones; the event ids
    stored (the others were there already). Their drains are enqueued after commit."""
    app_pk = rows[0][0]
    stored, forward = usage_event_store().insert(rows)
    if stored:
        transaction.on_commit(lambda: rollups_enqueue(app_pk))
    if forward:
        # The integrations' forwarder, by name (events does not import integrations).
        transaction.on_commit(forward_enqueue)
    return stored


def usage_events_ingest(
    *, app: App, raw_events: list[object], customer: Customer | None = None
) -> IngestResult:
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
