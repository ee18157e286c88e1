"""The inbox's tables (`sources_inboxmessage`, `sources_inboxbatch`) behind one small interface:
set-based SQL on PostgreSQL, row by row on SQLite (under `make run`). Chosen once per connection
vendor (`store()`), like `integrations.delivery_store`; the receipt (`receipt.py`), the processing
(`processing.py`) and the mapping cache never branch on the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from hub.raw_cursor import raw_cursor

from .models import InboxBatch, InboxMessage

_COLUMNS = (
    "(source_id, format, message_id, type, event, payload, status, outcome, error, matched, results, "
    "received_at)"
)
# PostgreSQL: the rows arrive as arrays (one short prepared statement for any batch size; psycopg
# parses a statement of a thousand placeholders in Python on every call), text arrays in binary
# (%b: a text-format array's elements are escaped in Python).
_SELECT_UNNEST = (
    "SELECT %s, f, i, t, e, p::json, s, o, r, '[]', '[]', %s FROM unnest(%b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) AS u(f, i, t, e, p, s, o, r)"
)
_INSERT_PG = f"INSERT INTO sources_inboxmessage {_COLUMNS} {_SELECT_UNNEST} RETURNING id"
# ...and with the batch of the pending ones, so the batch commits with its messages.
_INSERT_BATCHED_PG = (
    f"WITH ins AS (INSERT INTO sources_inboxmessage {_COLUMNS} {_SELECT_UNNEST} "  # noqa: S608
    "RETURNING id, status) "
    "INSERT INTO sources_inboxbatch (source_id, message_ids, size, created_at) "
    "SELECT %s, to_jsonb(array_agg(id ORDER BY id)), count(*), %s FROM ins WHERE status = 'pending' "
    "HAVING count(*) > 0"
)
# ...and the usual request, every message valid and of one format: four arrays, not eight.
_INSERT_PENDING_PG = (
    f"WITH ins AS (INSERT INTO sources_inboxmessage {_COLUMNS} "  # noqa: S608
    "SELECT %s, %s, i, t, e, p::json, 'pending', '', '', '[]', '[]', %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS u(i, t, e, p) RETURNING id) "
    "INSERT INTO sources_inboxbatch (source_id, message_ids, size, created_at) "
    "SELECT %s, to_jsonb(array_agg(id ORDER BY id)), count(*), %s FROM ins"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, '[]', '[]', %s)"

# Batches after the last one this transaction claimed (SKIP LOCKED skips other transactions'
# locks, not its own): their sizes first, without locks, then the ones that reach the limit.
_CANDIDATES = "SELECT id, size FROM sources_inboxbatch WHERE id > %s ORDER BY id LIMIT %s"
_CLAIM_BATCHES = (
    "SELECT id, size, message_ids FROM sources_inboxbatch WHERE id = ANY(%s) ORDER BY id "
    "FOR UPDATE SKIP LOCKED"
)
_CANDIDATES_AT_ONCE = 64
_PENDING_OF = (
    "SELECT id, source_id, payload FROM sources_inboxmessage WHERE id = ANY(%s) AND status = 'pending' "
    "ORDER BY id"
)
_MARK = (
    "UPDATE sources_inboxmessage SET status = 'processed', outcome = %s, matched = %s, results = %s, "
    "error = %s, processed_at = %s WHERE id = %s AND status = 'pending'"
)
# PostgreSQL: the whole batch in one statement (one row per message was most of a batch's time),
# with the claimed batches deleted; arrays in binary (%b), as psycopg escapes a text-format
# array's elements in Python.
_MARK_ALL = (
    "WITH done AS (DELETE FROM sources_inboxbatch WHERE id = ANY(%s)) "
    "UPDATE sources_inboxmessage m SET status = 'processed', outcome = u.outcome, "
    "matched = u.matched::json, results = u.results::json, error = u.error, processed_at = %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[]) "
    "AS u(outcome, matched, results, error, id) WHERE m.id = u.id AND m.status = 'pending'"
)
# ...and the usual batch, every message with the same outcome, mappings and error: two arrays.
_MARK_UNIFORM = (
    "WITH done AS (DELETE FROM sources_inboxbatch WHERE id = ANY(%s)) "
    "UPDATE sources_inboxmessage m SET status = 'processed', outcome = %s, matched = %s::json, "
    "results = u.results::json, error = %s, processed_at = %s "
    "FROM unnest(%b::text[], %b::bigint[]) AS u(results, id) WHERE m.id = u.id AND m.status = 'pending'"
)
# The state of what processing reads besides the messages: a source's app and its enabled
# mappings, as digests of their rows (whatever changed them, a form or a bulk update).
_SOURCE_STATE = (
    "SELECT s.id, md5(a::text), (SELECT md5(coalesce(string_agg(m::text, ',' ORDER BY m.position, m.id), "
    "'')) FROM sources_mapping m WHERE m.source_id = s.id AND m.enabled) "
    "FROM sources_source s JOIN hub_app a ON a.id = s.app_id WHERE s.id = ANY(%s)"
)


@dataclass
class InboxRow:
    """One inbox row to insert (the source and the time of receipt are the request's)."""

    format: str
    message_id: str
    type: str
    event: str
    payload: str
    status: str
    outcome: str
    error: str
    message: Any  # the normalized message, for inline processing


# A pending message as processing reads it: (id, source id, payload as stored).
PendingRow = tuple[int, int, Any]
# A processed message's mark: (outcome, matched JSON, results JSON, error, id).
Mark = tuple[str, str, str, str, int]
# A claimed batch: (id, its message ids).
ClaimedBatch = tuple[int, list[int]]


class InboxStore(Protocol):
    def connection_prepare(self, db: BaseDatabaseWrapper) -> None:
        """Set up a new database connection for the inbox's columns."""

    def rows_insert(
        self, source_id: int, rows: list[InboxRow], received_at: datetime, *, batched: bool
    ) -> list[int]:
        """Insert inbox rows (and, `batched`, the batch of the pending ones for the workers); their
        ids in order, unless `batched`."""

    def batches_claim(self, limit: int) -> list[ClaimedBatch]:
        """Lock pending batches, oldest first, until they hold `limit` messages (or none is left);
        the last one may take it past `limit`, by less than one batch."""

    def pending_rows(self, batches: list[ClaimedBatch]) -> list[PendingRow]:
        """The messages of claimed batches still pending: (id, source id, payload), in order."""

    def messages_mark(self, marks: list[Mark], *, batch_ids: list[int], now: datetime) -> None:
        """Mark pending messages processed (each with its outcome, mappings, results and error) and
        delete the batches `batch_ids`."""

    def source_states(self, source_ids: set[int]) -> dict[int, tuple[str, str]] | None:
        """Each source's digests of its app row and of its enabled mappings (what processing reads
        besides the messages), or None where the database cannot digest rows."""


def batches_delete(batch_ids: list[int]) -> None:
    """Batches done without a mark to fold their deletion into (none of their messages pending)."""
    if batch_ids:
        InboxBatch.objects.filter(pk__in=batch_ids).delete()


def message_mark_failed(row_id: int, error: str) -> None:
    """Mark one pending message processed and failed with `error`."""
    InboxMessage.objects.filter(pk=row_id, status=InboxMessage.Status.PENDING).update(
        status=InboxMessage.Status.PROCESSED,
        outcome=InboxMessage.Outcome.FAILED,
        error=error,
        processed_at=timezone.now(),
    )


def _batches_claim(limit: int, claim: str, ids_param: Callable[[list[int]], Any]) -> list[ClaimedBatch]:
    """Claim batches with the statement `claim` (the ids as `ids_param` makes them)."""
    claimed: list[ClaimedBatch] = []
    total, after = 0, 0
    with raw_cursor() as cursor:
        while total < limit:
            cursor.execute(_CANDIDATES, [after, _CANDIDATES_AT_ONCE])
            candidates = cursor.fetchall()
            if not candidates:
                break
            wanted, room = [], limit - total
            for batch_id, size in candidates:
                wanted.append(batch_id)
                room -= size
                if room <= 0:
                    break
            after = wanted[-1]
            cursor.execute(claim, [ids_param(wanted)])
            for batch_id, size, message_ids in cursor.fetchall():
                if isinstance(message_ids, str | bytes):
                    message_ids = orjson.loads(message_ids)
                claimed.append((batch_id, message_ids))
                total += size
            if len(candidates) < _CANDIDATES_AT_ONCE and wanted[-1] == candidates[-1][0]:
                break
    return claimed


class PostgresInboxStore:
    """Arrays in one statement per request or batch (`unnest`), row locks with `SKIP LOCKED`."""

    def connection_prepare(self, db: BaseDatabaseWrapper) -> None:
        """Load `json` columns (the inbox's) as text, as Django has psycopg load `jsonb`: the JSON
        field decodes the text itself, and the inbox workers decode it with orjson."""
        from psycopg.types.string import TextLoader

        db.connection.adapters.register_loader("json", TextLoader)

    def rows_insert(
        self, source_id: int, rows: list[InboxRow], received_at: datetime, *, batched: bool
    ) -> list[int]:
        if not rows:
            return []
        pending = InboxMessage.Status.PENDING
        if batched and all(r.status == pending and r.format == rows[0].format for r in rows):
            columns = [[r.message_id for r in rows], [r.type for r in rows], [r.event for r in rows]]
            columns.append([r.payload for r in rows])
            with raw_cursor() as cursor:
                cursor.execute(
                    _INSERT_PENDING_PG,
                    [source_id, rows[0].format, received_at, *columns, source_id, received_at],
                )
            return []
        columns = [
            [getattr(r, name) for r in rows]
            for name in ("format", "message_id", "type", "event", "payload", "status", "outcome", "error")
        ]
        with raw_cursor() as cursor:
            if batched:
                cursor.execute(_INSERT_BATCHED_PG, [source_id, received_at, *columns, source_id, received_at])
                return []
            cursor.execute(_INSERT_PG, [source_id, received_at, *columns])
            return sorted(r[0] for r in cursor.fetchall())

    def batches_claim(self, limit: int) -> list[ClaimedBatch]:
        return _batches_claim(limit, _CLAIM_BATCHES, lambda ids: ids)

    def pending_rows(self, batches: list[ClaimedBatch]) -> list[PendingRow]:
        ids = [message_id for _, message_ids in batches for message_id in message_ids]
        if not ids:
            return []
        with raw_cursor() as cursor:
            cursor.execute(_PENDING_OF, [ids])
            pending: list[PendingRow] = cursor.fetchall()
        return pending

    def messages_mark(self, marks: list[Mark], *, batch_ids: list[int], now: datetime) -> None:
        outcome, matched, _, error, _ = marks[0]
        with raw_cursor() as cursor:
            if all(m[0] == outcome and m[1] == matched and m[3] == error for m in marks):
                results, ids = [m[2] for m in marks], [m[4] for m in marks]
                cursor.execute(_MARK_UNIFORM, [batch_ids, outcome, matched, error, now, results, ids])
            else:
                columns = [list(column) for column in zip(*marks, strict=True)]
                cursor.execute(_MARK_ALL, [batch_ids, now, *columns])

    def source_states(self, source_ids: set[int]) -> dict[int, tuple[str, str]] | None:
        with raw_cursor() as cursor:
            cursor.execute(_SOURCE_STATE, [list(source_ids)])
            return {
                source_id: (app_digest, mappings_digest) for source_id, app_digest, mappings_digest in cursor
            }


# SQLite has no row locks: its transactions (BEGIN IMMEDIATE) hold the database's write lock.
_CLAIM_BATCHES_SQLITE = _CLAIM_BATCHES.replace(
    "id = ANY(%s)", "id IN (SELECT value FROM json_each(%s))"
).replace(" FOR UPDATE SKIP LOCKED", "")


class SqliteInboxStore:
    """A statement per row (SQLite has no arrays), no row locks, no row digests."""

    def connection_prepare(self, db: BaseDatabaseWrapper) -> None:
        pass

    def rows_insert(
        self, source_id: int, rows: list[InboxRow], received_at: datetime, *, batched: bool
    ) -> list[int]:
        if not rows:
            return []
        ids: list[int] = []
        with transaction.atomic(), raw_cursor() as cursor:
            for r in rows:
                cursor.execute(
                    f"INSERT INTO sources_inboxmessage {_COLUMNS} VALUES {_ROW} RETURNING id",  # noqa: S608
                    [source_id, r.format, r.message_id, r.type, r.event, r.payload, r.status, r.outcome,
                     r.error, received_at],
                )  # fmt: skip
                ids.append(cursor.fetchone()[0])
            pending = [i for i, r in zip(ids, rows, strict=True) if r.status == InboxMessage.Status.PENDING]
            if batched and pending:
                InboxBatch.objects.create(
                    source_id=source_id, message_ids=pending, size=len(pending), created_at=received_at
                )
        return ids

    def batches_claim(self, limit: int) -> list[ClaimedBatch]:
        return _batches_claim(limit, _CLAIM_BATCHES_SQLITE, lambda ids: orjson.dumps(ids).decode())

    def pending_rows(self, batches: list[ClaimedBatch]) -> list[PendingRow]:
        ids = [message_id for _, message_ids in batches for message_id in message_ids]
        if not ids:
            return []
        return list(
            InboxMessage.objects.filter(pk__in=ids, status=InboxMessage.Status.PENDING)
            .order_by("id")
            .values_list("id", "source_id", "payload")
        )

    def messages_mark(self, marks: list[Mark], *, batch_ids: list[int], now: datetime) -> None:
        with raw_cursor() as cursor:
            cursor.executemany(_MARK, [(o, m, r, e, now, i) for o, m, r, e, i in marks])
        batches_delete(batch_ids)

    def source_states(self, source_ids: set[int]) -> dict[int, tuple[str, str]] | None:
        return None


@functools.cache
def _store_for(vendor: str) -> InboxStore:
    return PostgresInboxStore() if vendor == "postgresql" else SqliteInboxStore()


def store(db: BaseDatabaseWrapper | None = None) -> InboxStore:
    """The inbox store of `db` (the default database's connection unless given)."""
    return _store_for((db or connection).vendor)
