"""The delivery engine's tables on PostgreSQL: set-based SQL, a few statements per request
whatever its size (deliveries inserted from arrays, claimed with `FOR UPDATE SKIP LOCKED` as plain
tuples, marked by id arrays)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from operator import attrgetter

import orjson
import psycopg
from django.db import connection, transaction

from hub.raw_cursor import local_setting, raw_cursor

from .delivery_rows import (
    FANOUT_SLOTS,
    PROBE_SLOT,
    SEND_SLOTS,
    ActivityRow,
    Claimed,
    NewDelivery,
    RetryMark,
    uuid_list,
    xact_lock_any,
)
from .models import Attempt

_SEPARATOR = "\x1e"

# Inserts of at least this many deliveries run on a generic plan (see `deliveries_insert`).
GENERIC_PLAN_ROWS = 64


def _plain_join(values: tuple) -> str:
    """The values' text run together, or the separator when one is not a string."""
    try:
        return "".join(values)
    except TypeError:
        return _SEPARATOR


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
        yield xact_lock_any(SEND_SLOTS, keys, wait)

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
        yield xact_lock_any(FANOUT_SLOTS, list(range(slots)), 0.0)

    @contextmanager
    def probe_slot(self, *, integration_id: int) -> Iterator[bool]:
        """The integration's one probe slot (True), or False when a probe is out already, for the
        rest of the caller's transaction, like `send_slot`. An advisory lock, not the integration's
        row: a row lock held through a hanging probe would block every insert of the
        integration's deliveries and attempts (their foreign-key checks) for as long."""
        if not connection.in_atomic_block:
            raise RuntimeError("probe_slot holds its lock until the transaction ends: call it inside one")
        with raw_cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [PROBE_SLOT, integration_id])
            taken = bool(cursor.fetchone()[0])
        yield taken

    def activities_waiting(self, *, limit: int) -> int:
        with raw_cursor() as cursor:
            cursor.execute("SELECT count(*) FROM (SELECT 1 FROM hub_activityoutbox LIMIT %s) AS w", [limit])
            return cursor.fetchone()[0]

    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]:
        # Claimed by deleting their outbox rows (picked and locked on their own, oldest first
        # unless given), then joined: nothing is written to hub_activity, whose rows are large and
        # indexed several times (an update of each claimed activity was the fan-out's largest cost
        # in PostgreSQL). The picked ids are an array: as `IN (subquery)` the planner may hash
        # them and scan the whole queue. An outbox row whose activity is gone (deleted in SQL) is
        # deleted and joins nothing.
        where, order = "", "ORDER BY id "
        params: list = []
        if ids is not None:
            where, order = "WHERE activity_id = ANY(%b::uuid[]) ", ""
            params.append(uuid_list(ids))
        params.append(limit)
        # Deleted by the row versions the subquery locked (a TID scan): by id, each row cost a
        # descent of the primary key's index again. A locked row cannot move before the delete,
        # and outbox rows are never updated. A ctid names a row of one table only: were the
        # outbox ever partitioned or inherited, select and match `tableoid` too.
        sql = (
            "WITH picked AS (DELETE FROM hub_activityoutbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM "
            f"hub_activityoutbox {where}{order}LIMIT %s FOR UPDATE SKIP LOCKED)) "
            "RETURNING id, activity_id) "
            "SELECT a.id::text, a.app_id, a.kind, "
            """to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), """
            # The customer's fields as they were (or, for activities older than snapshots, as they
            # are): one column, parsed once.
            "a.properties::text, c.public_id::text, "
            "COALESCE(NULLIF(a.customer_fields, '{}'::jsonb), c.custom_fields, '{}'::jsonb)::text "
            "FROM picked p JOIN hub_activity a ON a.id = p.activity_id "
            "JOIN hub_customer c ON c.id = a.customer_id ORDER BY p.id"
        )
        # A queue's table holds few live rows and, until the next vacuum, every row claimed
        # since: its statistics say "small", its pages are many, and a sequential scan reads
        # them all (1,700 pages, 17-32 ms a claim of 20 after 50,000 claimed, against 270
        # pages and 0.5 ms by its indexes). For this statement, its indexes only.
        with raw_cursor() as cursor, local_setting(cursor, "enable_seqscan", "off"):
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        loads = orjson.loads
        # Positional: (id, app_id, kind, timestamp, properties, customer_public_id, customer_fields).
        return [ActivityRow(r[0], r[1], r[2], r[3], loads(r[4]), r[5], loads(r[6])) for r in rows]

    _COLUMNS = (
        ("id", "uuid"),
        ("integration_id", "bigint"),
        ("item_kind", "text"),
        ("item_id", "text"),
        ("action", "text"),
        ("message_id", "text"),
        ("activity_id", "uuid"),  # after item_id: an activity's is the same text, cast
        ("message", "text"),
        ("status", "text"),
        ("attempts", "int"),
        ("next_attempt_at", "timestamptz"),
        ("delivered_at", "timestamptz"),
        ("last_status_code", "int"),
        ("last_error", "text"),
        ("last_attempt_id", "bigint"),
    )

    _VALUES = attrgetter(*(name for name, _ in _COLUMNS))

    def deliveries_insert(
        self, *, rows: list[NewDelivery], now: datetime, may_exist: bool = False
    ) -> dict[int, int]:
        if not rows:
            return {}
        for r in rows:
            if r.status == "pending" and r.next_attempt_at is None:
                r.next_attempt_at = now
        # One array per column that varies; a column with one value for every row is one parameter,
        # and one whose values are another column's of its type (an activity's item id is its message
        # id) reads that column's array: each array costs the client its dumping and the server its
        # parsing, element by element.
        selects, arrays, scalar_params, array_params = [], [], [], []
        # Column by column, transposed in C (a list comprehension of getattr per column cost twice).
        by_column = zip(*map(self._VALUES, rows), strict=True)
        for (name, pgtype), values in zip(self._COLUMNS, by_column, strict=True):
            first = values[0]
            if name != "id" and values.count(first) == len(values):
                selects.append(f"%s::{pgtype}")
                scalar_params.append(first)
                continue
            # The same values as an earlier column's (an activity's message id is its item id, and
            # its activity id the same text as a uuid): that column's array, cast if need be.
            same = next((
                (n, t) for (n, t), v in zip(arrays, array_params, strict=True)
                if t in (pgtype, "text") and v == values
            ), None)  # fmt: skip
            if same is not None:
                selects.append(f"t.{same[0]}" if same[1] == pgtype else f"t.{same[0]}::{pgtype}")
            else:
                selects.append(f"t.{name}")
                arrays.append((name, pgtype))
                array_params.append(values)
        # Text goes as one string split by the server: psycopg dumps a list element by element in
        # Python (a message a delivery, a sizeable share of the fan-out's client CPU). The separator
        # (ASCII RS) is raw in no JSON text; a column whose values may hold it goes as an array.
        unnested = []
        for i, ((_, pgtype), values) in enumerate(zip(arrays, array_params, strict=True)):
            # Joined without the separator first: a join raises on a value that is not a string,
            # and `in` finds a character with memchr (counting the separators in the joined text
            # cost 2,500 instructions a delivery, its message scanned byte by byte).
            if pgtype == "text" and _SEPARATOR not in _plain_join(values):
                array_params[i] = _SEPARATOR.join(values)
                unnested.append("string_to_array(%s, E'\\x1e')")
                continue
            array_params[i] = list(values)  # a tuple would be dumped as a record
            unnested.append(f"%b::{pgtype}[]")
        columns = ", ".join(name for name, _ in self._COLUMNS)
        source = (
            "FROM unnest(" + ", ".join(unnested) + ") AS t(" + ", ".join(name for name, _ in arrays) + ")"
        )
        sql = (
            f"INSERT INTO integrations_delivery ({columns}, retry_window_start, created_at, updated_at) "
            f"SELECT {', '.join(selects)}, %s, %s, %s {source} "
        )
        params = [*scalar_params, now, now, now, *array_params]
        # A delivery's id is derived from (integration, message id), so a message fanned out again
        # (a backfill over events forwarded already) finds its row there: ON CONFLICT DO NOTHING
        # keeps it. But an insert with ON CONFLICT inserts each row speculatively (check, insert,
        # confirm: a third more WAL records) and took nearly twice the plain insert's time (91
        # against 50 ms for 5,000 deliveries). A fan-out's items are claimed from their queue in
        # its own transaction, so they are new but for a rare overlap with a backfill: they go
        # in plainly, in a savepoint, and only a conflict sends them again with ON CONFLICT.
        rows_returned: list = []
        with raw_cursor() as cursor:
            # A custom plan (PostgreSQL's choice for a statement's first executions on each
            # connection) folds `string_to_array` of the bound text at planning time and then
            # copies the folded array through the planner's tree: a fan-out of thousands spent a
            # fifth of its server CPU planning and faulting in that memory. A generic plan splits
            # the text once, at execution. For large inserts only: the extra round trips would
            # cost a small fan-out more than its planning.
            generic = len(rows) >= GENERIC_PLAN_ROWS and connection.in_atomic_block
            plan = (
                local_setting(cursor, "plan_cache_mode", "force_generic_plan") if generic else nullcontext()
            )
            # The rows made, counted by integration in the statement: a row a delivery back to
            # the client was a sizeable share of the client's part.
            count = ") SELECT integration_id, count(*) FROM ins GROUP BY integration_id"
            with plan:
                if not may_exist:
                    try:
                        with transaction.atomic():
                            cursor.execute("WITH ins AS (" + sql + "RETURNING integration_id" + count, params)
                            rows_returned = cursor.fetchall()
                    except psycopg.errors.UniqueViolation:  # raised as psycopg's: the cursor is the driver's
                        may_exist = True
                if may_exist:
                    cursor.execute(
                        "WITH ins AS ("
                        + sql
                        + "ON CONFLICT (id) DO NOTHING RETURNING integration_id"
                        + count,
                        params,
                    )
                    rows_returned = cursor.fetchall()
        return dict(rows_returned)

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
            params: list = [uuid_list(only), integration_id, limit]
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
                [uuid_list(ids)],
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
                    orjson.dumps(attempt.delivery_ids).decode(),  # strings or UUIDs
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
