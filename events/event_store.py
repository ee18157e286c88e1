"""The usage-event table behind one small interface per database, chosen once per connection vendor.

Storing events is one statement on PostgreSQL (the dedupe keys, the events, the rollup batches of
their new ids, one per shard of their customers, and, for apps that forward usage events, the
forward batch, all in one data-modifying CTE; the table's partitions are in `events.partitions`);
SQLite (`make run`) gets the same rows from a few statements in one transaction. The ingest service
(`events.services`) never branches on the database.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Protocol

from django.db import connection, transaction

from hub.models import App
from hub.raw_cursor import DirectStatement, raw_cursor

from .models import ROLLUP_SHARDS, ForwardBatch, RollupBatch
from .partitions import id_base

# (app id, customer id, event id, event name, timestamp, properties as JSON text, received at)
EventRow = tuple[int, int, str, str, datetime, str, datetime]

_COLUMNS = "(app_id, customer_id, event_id, event_name, timestamp, properties, received_at)"
# PostgreSQL: one statement stores the dedupe keys, the events whose key was new, and the batch of
# their ids for the rollups, so all commit together whatever the transaction; rows arrive as arrays
# (one prepared statement for any batch size) and are stored in the order given, the first of
# repeated event ids winning. The events table is partitioned by month through its ids (the
# month of `received_at` in their high bits, `events.partitions`), so its unique indexes cannot
# hold (app_id, event_id): the narrow events_usageeventkey does (concurrent inserts of one key
# wait on its unique index, as they did on the events table's).
# Arrays are sent in binary (%b): psycopg escapes every element of a text-format array in
# Python, several times slower for JSON documents (and formats each timestamp as text).
_ROWS_PG = (
    "WITH u AS (SELECT DISTINCT ON (i) c, i, n, t, p, o FROM unnest(%b::bigint[], %b::text[], "
    "%b::text[], %b::timestamptz[], %b::text[]::jsonb[]) WITH ORDINALITY AS u(c, i, n, t, p, o) "
    "ORDER BY i, o), "
)
_STORE_PG = (
    "k AS (INSERT INTO events_usageeventkey (app_id, event_id, received_at) SELECT %s, i, %s FROM u "  # noqa: S608 (constants)
    "ON CONFLICT (app_id, event_id) DO NOTHING RETURNING event_id), "
    "ins AS (INSERT INTO events_usageevent (id, app_id, customer_id, event_id, event_name, timestamp, "
    "properties, received_at) SELECT %s::bigint + nextval('events_usageevent_id_seq'), %s, c, i, n, t, p, %s "
    "FROM u JOIN k ON k.event_id = u.i ORDER BY o RETURNING id, event_id, customer_id), "
    # One rollup batch per shard of the events' customers (`RollupBatch`).
    "batch AS (INSERT INTO events_rollupbatch (app_id, shard, event_ids, created_at) "
    f"SELECT %s, mod(customer_id, {ROLLUP_SHARDS}), to_jsonb(array_agg(id ORDER BY id)), %s FROM ins "
    f"GROUP BY mod(customer_id, {ROLLUP_SHARDS}) ORDER BY 2), "
    # Read in this statement, so an app whose destinations subscribed a moment ago is seen.
    "forward AS (INSERT INTO events_forwardbatch (app_id, event_ids, created_at) "
    "SELECT %s, to_jsonb(array_agg(id)), %s FROM ins "
    "WHERE EXISTS (SELECT 1 FROM hub_app WHERE id = %s AND forward_usage_events) HAVING count(*) > 0 "
    "RETURNING id) "
    "SELECT event_id, EXISTS (SELECT 1 FROM forward) FROM ins"
)
_INSERT_PG = _ROWS_PG + _STORE_PG
# One event (most requests): the same rows from a statement of one row's shape, its values as plain
# parameters. Dumping five one-element arrays cost the client more than the rest of the statement's
# parameters together; and the executor sets up every node of a plan at each run, so the general
# statement's unnest, join, sort and aggregates cost the server about a quarter of the statement
# (0.26 against 0.20 ms of backend CPU, measured alone) for one row.
_INSERT_ONE_PG = (
    "WITH k AS (INSERT INTO events_usageeventkey (app_id, event_id, received_at) "  # noqa: S608 (constants)
    "VALUES (%s::bigint, %s::text, %s::timestamptz) "
    "ON CONFLICT (app_id, event_id) DO NOTHING RETURNING event_id), "
    "ins AS (INSERT INTO events_usageevent (id, app_id, customer_id, event_id, event_name, timestamp, "
    "properties, received_at) SELECT %s::bigint + nextval('events_usageevent_id_seq'), %s::bigint, "
    "%s::bigint, event_id, %s::text, %s::timestamptz, %s::jsonb, %s::timestamptz FROM k "
    "RETURNING id, event_id, customer_id), "
    "batch AS (INSERT INTO events_rollupbatch (app_id, shard, event_ids, created_at) "
    f"SELECT %s::bigint, mod(customer_id, {ROLLUP_SHARDS}), jsonb_build_array(id), %s::timestamptz "
    "FROM ins), "
    "forward AS (INSERT INTO events_forwardbatch (app_id, event_ids, created_at) "
    "SELECT %s::bigint, jsonb_build_array(id), %s::timestamptz FROM ins "
    "WHERE EXISTS (SELECT 1 FROM hub_app WHERE id = %s::bigint AND forward_usage_events) RETURNING id) "
    "SELECT event_id, EXISTS (SELECT 1 FROM forward) FROM ins"
)
# Most requests: one event, through libpq itself (no psycopg cursor); its stored id and whether a
# forward batch was written come back as text.
_INSERT_ONE = DirectStatement("usage_event_one", _INSERT_ONE_PG, (bytes.decode, b"t".__eq__))
_VALUES_ROW = "(%s, %s, %s, %s, %s, %s, %s)"
ROWS_PER_STATEMENT = 20  # SQLite: rows per INSERT (its limit of bound parameters)


class UsageEventStore(Protocol):
    def insert(self, rows: list[EventRow]) -> tuple[list[str], bool]:
        """INSERT ... ON CONFLICT DO NOTHING every row (all of one app), with the rollup batch of
        the new ones and, if the app forwards usage events, their forward batch: the event ids
        stored (the others were there already) and whether a forward batch was written."""
        ...


class PostgresUsageEventStore:
    def insert(self, rows: list[EventRow]) -> tuple[list[str], bool]:
        app_pk, received_at = rows[0][0], rows[0][6]
        if len(rows) == 1:
            _, customer_pk, event_id, name, timestamp, properties, _ = rows[0]
            fetched = _INSERT_ONE.rows([app_pk, event_id, received_at, id_base(received_at), app_pk,
                                        customer_pk, name, timestamp, properties, received_at, app_pk,
                                        received_at, app_pk, received_at, app_pk])  # fmt: skip
        else:
            params = [[r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows],
                      [r[5] for r in rows], app_pk, received_at, id_base(received_at), app_pk, received_at,
                      app_pk, received_at, app_pk, received_at, app_pk]  # fmt: skip
            with raw_cursor() as cursor:
                cursor.execute(_INSERT_PG, params)
                fetched = cursor.fetchall()
        return [r[0] for r in fetched], bool(fetched) and fetched[0][1]


class SqliteUsageEventStore:
    def insert(self, rows: list[EventRow]) -> tuple[list[str], bool]:
        app_pk, received_at = rows[0][0], rows[0][6]
        forward = False
        with transaction.atomic(), raw_cursor() as cursor:
            ids, customers, stored = [], [], []
            for i in range(0, len(rows), ROWS_PER_STATEMENT):
                # The dedupe keys first, as on PostgreSQL; then the events whose key was new (the
                # table's own unique (app_id, event_id), where it still has it, refuses the rest).
                keys = rows[i : i + ROWS_PER_STATEMENT]
                cursor.execute(
                    "INSERT INTO events_usageeventkey (app_id, event_id, received_at) VALUES "  # noqa: S608
                    + ", ".join(["(%s, %s, %s)"] * len(keys))
                    + " ON CONFLICT (app_id, event_id) DO NOTHING RETURNING event_id",
                    [v for row in keys for v in (row[0], row[2], row[6])],
                )
                new = {row[0] for row in cursor.fetchall()}
                part = [row for row in keys if row[2] in new]
                if not part:
                    continue
                values = ", ".join([_VALUES_ROW] * len(part))
                cursor.execute(
                    f"INSERT INTO events_usageevent {_COLUMNS} VALUES {values} "  # noqa: S608
                    "ON CONFLICT DO NOTHING RETURNING id, event_id, customer_id",
                    [v for row in part for v in row],
                )
                for pk, event_id, customer_pk in cursor.fetchall():
                    ids.append(pk)
                    customers.append(customer_pk)
                    stored.append(event_id)
            if ids:
                shards: dict[int, list[int]] = {}
                for pk, customer_pk in zip(ids, customers, strict=True):
                    shards.setdefault(customer_pk % ROLLUP_SHARDS, []).append(pk)
                RollupBatch.objects.bulk_create(
                    [
                        RollupBatch(app_id=app_pk, shard=shard, event_ids=shard_ids, created_at=received_at)
                        for shard, shard_ids in sorted(shards.items())
                    ]
                )
                forward = App.objects.filter(pk=app_pk, forward_usage_events=True).exists()
                if forward:
                    ForwardBatch.objects.create(app_id=app_pk, event_ids=ids, created_at=received_at)
        return stored, forward


@functools.cache
def _store_for(vendor: str) -> UsageEventStore:
    return PostgresUsageEventStore() if vendor == "postgresql" else SqliteUsageEventStore()


def usage_event_store() -> UsageEventStore:
    """The usage-event store of the default connection's database."""
    return _store_for(connection.vendor)
