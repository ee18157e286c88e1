"""The delivery engine's tables behind one small interface: set-based SQL on PostgreSQL, the ORM
elsewhere (SQLite under `make run`). Chosen once per connection vendor; the engine
(`integrations.delivery`) never branches on the database.

Every hot-path operation is a few statements per request, whatever its size: deliveries are
inserted from arrays, claimed with `FOR UPDATE SKIP LOCKED` as plain tuples (no ORM object per
delivery), and marked by id arrays.
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
from django.db import connection, transaction

from hub.models import Activity
from hub.raw_cursor import raw_cursor

from .models import Attempt, Delivery


def iso_ms(dt: datetime) -> str:
    """A time as Segment's messages carry it: UTC, milliseconds, `Z`."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class ActivityRow:
    """An undispatched activity with what its messages are rendered from (as it was then).

    Ids are text and the time is its ISO form (`iso_ms`): the fan-out renders them as such.
    Not frozen: a frozen dataclass sets each field through `object.__setattr__`, and the fan-out
    makes one per activity.
    """

    id: str
    app_id: int
    kind: str
    timestamp: str
    properties: dict
    customer_public_id: str
    customer_fields: dict

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))


# uuid.UUID(bytes=digest, version=4), in two integer operations: the version and variant bits.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def delivery_id_for(integration_id: int, message_id: str) -> uuid.UUID:
    """A delivery's id, derived from what makes it unique (one message id per integration): the
    primary key itself keeps a fan-out that runs twice from creating a second delivery."""
    digest = hashlib.blake2b(f"{integration_id}:{message_id}".encode(), digest_size=16).digest()
    return uuid.UUID(int=(int.from_bytes(digest) & _UUID4_CLEAR) | _UUID4_SET)


@dataclass(slots=True)
class NewDelivery:
    """A delivery as the fan-out inserts it: pending, or already in its final state when the
    fan-out sent it at once."""

    integration_id: int
    item_kind: str
    item_id: str
    action: str
    message_id: str
    message: str  # the exact JSON text every attempt sends
    activity_id: str | None = None
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None  # pending: None means now
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str = ""
    last_attempt_id: int | None = None
    id: uuid.UUID | None = None
    raw: bytes = b""

    def __post_init__(self) -> None:
        if self.id is None:
            self.id = delivery_id_for(self.integration_id, self.message_id)
        self.raw = self.message.encode()


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    message: bytes
    action: str = ""  # the connector action that made it (its request may depend on it)


@dataclass(frozen=True)
class RetryState:
    attempts: int
    retry_window_start: datetime
    item_kind: str


@dataclass(frozen=True)
class RetryMark:
    id: uuid.UUID
    status: str  # pending (with next_attempt_at), failed or dead
    next_attempt_at: datetime | None
    error: str


def retry_states(ids: list) -> dict:
    """What a retry is scheduled from, for claimed deliveries (read only when a send failed)."""
    rows = Delivery.objects.filter(pk__in=ids).values_list(
        "pk", "attempts", "retry_window_start", "item_kind"
    )
    return {r[0]: RetryState(r[1], r[2], r[3]) for r in rows}


class DeliveryStore(Protocol):
    def send_slot(
        self, *, integration_id: int, slots: int, wait: float = 0.0
    ) -> AbstractContextManager[bool]: ...
    def fanout_slot(self, *, slots: int) -> AbstractContextManager[bool]: ...
    def request_slot(
        self, *, integration_id: int, slots: int, wait: float = 0.0
    ) -> AbstractContextManager[bool]: ...
    def probe_slot(self, *, integration_id: int) -> AbstractContextManager[bool]: ...
    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]: ...
    def activities_waiting(self, *, limit: int) -> int: ...
    def deliveries_insert(self, *, rows: list[NewDelivery], now: datetime) -> dict[int, int]: ...
    def claim(
        self, *, integration_id: int, limit: int, due_by: datetime | None, only: list | None
    ) -> list[Claimed]: ...
    def pending_any(self, *, ids: list) -> bool: ...
    def attempt_insert(self, *, attempt: Attempt) -> int: ...
    def mark_delivered(
        self, *, ids: list, attempt_id: int, status_code: int | None, now: datetime
    ) -> None: ...
    def mark_failed(
        self, *, ids: list, attempt_id: int, status_code: int | None, error: str, now: datetime
    ) -> None: ...
    def mark_retry(
        self, *, marks: list[RetryMark], attempt_id: int, status_code: int | None, now: datetime
    ) -> None: ...


def activity_row(activity: Activity) -> ActivityRow:
    """An activity (with its customer) as the fan-out renders it."""
    return ActivityRow(
        id=str(activity.pk),
        app_id=activity.app_id,
        kind=activity.kind,
        timestamp=iso_ms(activity.occurred_at),
        properties=activity.properties or {},
        customer_public_id=str(activity.customer.public_id),
        customer_fields=activity.customer_fields or activity.customer.custom_fields or {},
    )


def _uuids(ids: list) -> list[uuid.UUID]:
    """Ids as UUIDs (sent in binary: no text form made and parsed per id)."""
    return [x if isinstance(x, uuid.UUID) else uuid.UUID(str(x)) for x in ids]


def _loads(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return orjson.loads(value)


_SEND_SLOTS = 0x48554253  # the advisory-lock class of "requests in flight to an integration"
_PROBE_SLOT = 0x48554250  # the advisory-lock class of "the integration's probe is out"
_FANOUT_SLOTS = 0x48554246  # the advisory-lock class of "a fan-out of a backlog is running"


def _xact_lock_any(lock_class: int, keys: list[int], wait: float) -> bool:
    """Take the first free transaction-level advisory lock of `keys`; with `wait`, poll (a few
    milliseconds apart, growing to 20 ms) for up to that many seconds while none is free."""
    deadline = time.monotonic() + wait
    pause = 0.002
    with raw_cursor() as cursor:
        while True:
            for key in keys:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [lock_class, key])
                if cursor.fetchone()[0]:
                    return True
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(0.02, pause * 2)


class PostgresStore:
    """Raw SQL through psycopg's server-binding cursor (prepared on the connection)."""

    @contextmanager
    def send_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        """Take one of the integration's `slots` request slots (True), or none when all are taken
        (False), for the rest of the caller's transaction: seen by every process at once and freed
        when that transaction ends, however it ends (commit, rollback, the holder's death). With
        `wait`, try again for up to that many seconds while all are taken (a backlog's fan-out,
        which would otherwise write its deliveries pending, for a sender to claim and update).

        Transaction-level advisory locks, not session ones: behind a pooler in transaction mode
        (PgBouncer) consecutive transactions of one client may run on different server
        connections, so a session lock could be taken on one and "released" on another, and stay
        held for good. The slot is therefore held until commit, not only while the block runs.
        """
        if not connection.in_atomic_block:
            raise RuntimeError("send_slot holds its lock until the transaction ends: call it inside one")
        keys = [integration_id * 64 + slot for slot in range(slots)]
        yield _xact_lock_any(_SEND_SLOTS, keys, wait)

    @contextmanager
    def request_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        """One of the integration's request slots, as `send_slot`, but only while the block runs:
        taken in a savepoint that is rolled back when the block ends (which frees a transaction-level
        lock taken since, and only that: the block must not write). For requests whose outcome
        is written afterwards, in the same transaction (a fan-out's inline send): the slot covers
        the requests in flight, not the writes and the commit after them."""
        savepoint = transaction.savepoint()
        try:
            with self.send_slot(integration_id=integration_id, slots=slots, wait=wait) as ok:
                yield ok
        finally:
            transaction.savepoint_rollback(savepoint)

    @contextmanager
    def fanout_slot(self, *, slots: int) -> Iterator[bool]:
        """One of `slots` fan-outs of a backlog at once (True), or False, for the rest of the
        caller's transaction, like `send_slot`: a backlog is split over that many parallel
        fan-outs, and a task that finds them all running leaves it to them."""
        if not connection.in_atomic_block:
            raise RuntimeError("fanout_slot holds its lock until the transaction ends: call it inside one")
        yield _xact_lock_any(_FANOUT_SLOTS, list(range(slots)), 0.0)

    @contextmanager
    def probe_slot(self, *, integration_id: int) -> Iterator[bool]:
        """The integration's one probe slot (True), or False when a probe is out already, for the
        rest of the caller's transaction, like `send_slot`. An advisory lock, not the integration's
        row: a row lock held through a hanging probe would block every insert of the
        integration's deliveries and attempts (their foreign-key checks) for as long."""
        if not connection.in_atomic_block:
            raise RuntimeError("probe_slot holds its lock until the transaction ends: call it inside one")
        with raw_cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_PROBE_SLOT, integration_id])
            taken = bool(cursor.fetchone()[0])
        yield taken

    def activities_waiting(self, *, limit: int) -> int:
        with raw_cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM (SELECT 1 FROM hub_activity WHERE dispatched_at IS NULL LIMIT %s) AS w",
                [limit],
            )
            return cursor.fetchone()[0]

    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]:
        # Picked (and locked) on their own in the undispatched index's order, marked dispatched in
        # the same statement (one write per row), then joined: a plan that starts from the join
        # can scan that index once per customer. The picked ids are an array, found by primary
        # key: as `IN (subquery)` the planner hashes them and scans the whole table, every
        # activity ever recorded, once per chunk.
        where = "dispatched_at IS NULL"
        params: list = [now]
        if ids is not None:
            where += " AND id = ANY(%b::uuid[])"
            params.append(ids)
        params.append(limit)
        sql = (
            "WITH picked AS (UPDATE hub_activity SET dispatched_at = %s WHERE id = ANY(ARRAY(SELECT id FROM "
            f"hub_activity WHERE {where} ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)) "
            "RETURNING id, app_id, kind, occurred_at, properties, customer_fields, customer_id, created_at) "
            "SELECT p.id::text, p.app_id, p.kind, "
            """to_char(p.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), """
            "p.properties::text, p.customer_fields::text, c.public_id::text, c.custom_fields::text "
            "FROM picked p JOIN hub_customer c ON c.id = p.customer_id ORDER BY p.created_at"
        )
        with raw_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return [
            ActivityRow(
                id=r[0],
                app_id=r[1],
                kind=r[2],
                timestamp=r[3],
                properties=_loads(r[4]),
                customer_public_id=r[6],
                # Activities recorded before snapshots existed fall back to the customer's fields now.
                customer_fields=_loads(r[5]) or _loads(r[7]),
            )
            for r in rows
        ]

    _COLUMNS = (
        ("id", "uuid"),
        ("integration_id", "bigint"),
        ("activity_id", "uuid"),
        ("item_kind", "text"),
        ("item_id", "text"),
        ("action", "text"),
        ("message_id", "text"),
        ("message", "text"),
        ("status", "text"),
        ("attempts", "int"),
        ("next_attempt_at", "timestamptz"),
        ("delivered_at", "timestamptz"),
        ("last_status_code", "int"),
        ("last_error", "text"),
        ("last_attempt_id", "bigint"),
    )

    def deliveries_insert(self, *, rows: list[NewDelivery], now: datetime) -> dict[int, int]:
        if not rows:
            return {}
        for r in rows:
            if r.status == "pending" and r.next_attempt_at is None:
                r.next_attempt_at = now
        # One array per column that varies; a column with one value for every row is one parameter.
        selects, arrays, scalar_params, array_params = [], [], [], []
        for name, pgtype in self._COLUMNS:
            values = [getattr(r, name) for r in rows]
            first = values[0]
            if name != "id" and all(v == first for v in values):
                selects.append(f"%s::{pgtype}")
                scalar_params.append(first)
            else:
                selects.append(f"t.{name}")
                arrays.append((name, pgtype))
                array_params.append(values)
        columns = ", ".join(name for name, _ in self._COLUMNS)
        source = (
            "FROM unnest("
            + ", ".join(f"%b::{pgtype}[]" for _, pgtype in arrays)
            + ") AS t("
            + ", ".join(name for name, _ in arrays)
            + ")"
        )
        sql = (
            f"INSERT INTO integrations_delivery ({columns}, retry_window_start, created_at, updated_at) "
            f"SELECT {', '.join(selects)}, %s, %s, %s {source} "
            "ON CONFLICT (id) DO NOTHING RETURNING integration_id"
        )
        created: dict[int, int] = {}
        with raw_cursor() as cursor:
            cursor.execute(sql, [*scalar_params, now, now, now, *array_params])
            for (integration_id,) in cursor.fetchall():
                created[integration_id] = created.get(integration_id, 0) + 1
        return created

    def claim(
        self, *, integration_id: int, limit: int, due_by: datetime | None, only: list | None
    ) -> list[Claimed]:
        if only is not None:
            # Each id looked up by the primary key, in no particular order. As a plain join the
            # planner, misled by statistics that lag a fast-growing table, hash-joined the ids with
            # all of the integration's rows (16 ms a claim of a hundred in bench.destinations); a
            # lateral subquery with its own row lock is never flattened into such a join.
            sql = (
                "SELECT d.id, d.message, d.action FROM unnest(%b::uuid[]) AS o(id) "
                "CROSS JOIN LATERAL (SELECT id, message, action, integration_id, status "
                "FROM integrations_delivery WHERE id = o.id OFFSET 0 FOR UPDATE SKIP LOCKED) d "
                "WHERE d.integration_id = %s AND d.status = 'pending' LIMIT %s"
            )
            params: list = [_uuids(only), integration_id, limit]
        else:
            params = [integration_id]
            where = "integration_id = %s AND status = 'pending'"
            if due_by is not None:
                where += " AND next_attempt_at <= %s"
                params.append(due_by)
            params.append(limit)
            sql = (
                "SELECT id, message, action FROM integrations_delivery "
                f"WHERE {where} ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED"
            )
        with raw_cursor() as cursor:
            cursor.execute(sql, params)
            return [Claimed(r[0], r[1].encode(), r[2]) for r in cursor.fetchall()]

    def pending_any(self, *, ids: list) -> bool:
        with raw_cursor() as cursor:
            cursor.execute(
                # By the primary key, id by id (OFFSET 0 keeps the subquery from being flattened
                # into a join the planner may run over every pending row instead).
                "SELECT EXISTS (SELECT 1 FROM unnest(%b::uuid[]) AS o(id) CROSS JOIN LATERAL "
                "(SELECT status FROM integrations_delivery d WHERE d.id = o.id OFFSET 0) x "
                "WHERE x.status = 'pending')",
                [_uuids(ids)],
            )
            return bool(cursor.fetchone()[0])

    def attempt_insert(self, *, attempt: Attempt) -> int:
        with raw_cursor() as cursor:
            cursor.execute(
                "INSERT INTO integrations_attempt (integration_id, delivery_ids, probe, created_at, url, "
                "message_count, request_bytes, request_headers, request_excerpt, status_code, latency_ms, "
                "response_excerpt, error, outcome) "
                "VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s) RETURNING id",
                [
                    attempt.integration_id,
                    orjson.dumps(attempt.delivery_ids).decode(),
                    attempt.probe,
                    attempt.created_at,
                    attempt.url,
                    attempt.message_count,
                    attempt.request_bytes,
                    orjson.dumps(attempt.request_headers).decode(),
                    attempt.request_excerpt,
                    attempt.status_code,
                    attempt.latency_ms,
                    attempt.response_excerpt,
                    attempt.error,
                    attempt.outcome,
                ],
            )
            return cursor.fetchone()[0]

    def mark_delivered(self, *, ids: list, attempt_id: int, status_code: int | None, now: datetime) -> None:
        with raw_cursor() as cursor:
            cursor.execute(
                "UPDATE integrations_delivery SET status = 'delivered', attempts = attempts + 1, "
                "delivered_at = %s, next_attempt_at = NULL, last_error = '', last_status_code = %s, "
                "last_attempt_id = %s, updated_at = %s WHERE id = ANY(%b::uuid[])",
                [now, status_code, attempt_id, now, ids],
            )

    def mark_failed(
        self, *, ids: list, attempt_id: int, status_code: int | None, error: str, now: datetime
    ) -> None:
        with raw_cursor() as cursor:
            cursor.execute(
                "UPDATE integrations_delivery SET status = 'failed', attempts = attempts + 1, "
                "next_attempt_at = NULL, last_error = %s, last_status_code = %s, last_attempt_id = %s, "
                "updated_at = %s WHERE id = ANY(%b::uuid[])",
                [error, status_code, attempt_id, now, ids],
            )

    def mark_retry(
        self, *, marks: list[RetryMark], attempt_id: int, status_code: int | None, now: datetime
    ) -> None:
        with raw_cursor() as cursor:
            cursor.execute(
                "UPDATE integrations_delivery d SET status = t.s, attempts = d.attempts + 1, "
                "next_attempt_at = t.n, last_error = t.e, last_status_code = %s, last_attempt_id = %s, "
                "updated_at = %s FROM unnest(%b::uuid[], %b::text[], %b::timestamptz[], %b::text[]) "
                "AS t(i, s, n, e) WHERE d.id = t.i",
                [
                    status_code,
                    attempt_id,
                    now,
                    [m.id for m in marks],
                    [m.status for m in marks],
                    [m.next_attempt_at for m in marks],
                    [m.error for m in marks],
                ],
            )


class OrmStore:
    """The same operations through the ORM (SQLite: its transactions hold the write lock, so the
    claims need no row locks)."""

    @contextmanager
    def send_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def fanout_slot(self, *, slots: int) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def request_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def probe_slot(self, *, integration_id: int) -> Iterator[bool]:
        yield True  # one writer at a time already

    def activities_waiting(self, *, limit: int) -> int:
        return Activity.objects.filter(dispatched_at__isnull=True)[:limit].count()

    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]:
        qs = Activity.objects.filter(dispatched_at__isnull=True).select_related("customer")
        if ids is not None:
            qs = qs.filter(pk__in=ids)
        picked = list(qs.order_by("created_at")[:limit])
        Activity.objects.filter(pk__in=[a.pk for a in picked]).update(dispatched_at=now)
        return [activity_row(a) for a in picked]

    def deliveries_insert(self, *, rows: list[NewDelivery], now: datetime) -> dict[int, int]:
        created: dict[int, int] = {}
        for r in rows:
            _, new = Delivery.objects.get_or_create(
                id=r.id,
                defaults={
                    "integration_id": r.integration_id,
                    "message_id": r.message_id,
                    "activity_id": r.activity_id,
                    "item_kind": r.item_kind,
                    "item_id": r.item_id,
                    "action": r.action,
                    "message": r.message,
                    "status": r.status,
                    "attempts": r.attempts,
                    "next_attempt_at": (r.next_attempt_at or now) if r.status == "pending" else None,
                    "delivered_at": r.delivered_at,
                    "last_status_code": r.last_status_code,
                    "last_error": r.last_error,
                    "last_attempt_id": r.last_attempt_id,
                    "retry_window_start": now,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if new:
                created[r.integration_id] = created.get(r.integration_id, 0) + 1
        return created

    def claim(
        self, *, integration_id: int, limit: int, due_by: datetime | None, only: list | None
    ) -> list[Claimed]:
        qs = Delivery.objects.filter(integration_id=integration_id, status=Delivery.Status.PENDING)
        if only is not None:
            qs = qs.filter(pk__in=only)
        elif due_by is not None:
            qs = qs.filter(next_attempt_at__lte=due_by)
        rows = qs.order_by("next_attempt_at").values_list("id", "message", "action")[:limit]
        return [Claimed(r[0], r[1].encode(), r[2]) for r in rows]

    def pending_any(self, *, ids: list) -> bool:
        return Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING).exists()

    def attempt_insert(self, *, attempt: Attempt) -> int:
        attempt.save()
        return attempt.pk

    def mark_delivered(self, *, ids: list, attempt_id: int, status_code: int | None, now: datetime) -> None:
        from django.db.models import F

        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.DELIVERED,
            attempts=F("attempts") + 1,
            delivered_at=now,
            next_attempt_at=None,
            last_error="",
            last_status_code=status_code,
            last_attempt_id=attempt_id,
            updated_at=now,
        )

    def mark_failed(
        self, *, ids: list, attempt_id: int, status_code: int | None, error: str, now: datetime
    ) -> None:
        from django.db.models import F

        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.FAILED,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            last_error=error,
            last_status_code=status_code,
            last_attempt_id=attempt_id,
            updated_at=now,
        )

    def mark_retry(
        self, *, marks: list[RetryMark], attempt_id: int, status_code: int | None, now: datetime
    ) -> None:
        from django.db.models import F

        for m in marks:
            Delivery.objects.filter(pk=m.id).update(
                status=m.status,
                attempts=F("attempts") + 1,
                next_attempt_at=m.next_attempt_at,
                last_error=m.error,
                last_status_code=status_code,
                last_attempt_id=attempt_id,
                updated_at=now,
            )


@functools.cache
def _store_for(vendor: str) -> DeliveryStore:
    return PostgresStore() if vendor == "postgresql" else OrmStore()


def store() -> DeliveryStore:
    """The store of the default database (PostgreSQL's SQL, or the ORM)."""
    return _store_for(connection.vendor)


def integration_has_due(*, integration_id: int, now: datetime | None = None) -> bool:
    """Whether the integration has a pending delivery due by `now` (a sender would claim it)."""
    from django.utils import timezone

    return Delivery.objects.filter(
        integration_id=integration_id,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now or timezone.now(),
    ).exists()
