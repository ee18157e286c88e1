"""The rollup tables and the events they are counted from, behind one small interface per database.

PostgreSQL gets set-based SQL (a drain of many batches in one statement, `drain_sql`; a metric's
build in a few, `metric_sql`), arrays and data-modifying CTEs; SQLite (`make run`) gets the same
rows from the Python evaluation and one statement per distinct value. Chosen once per connection
vendor (`rollup_store()`); the rollups (`rollups`) never branch on the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.db import connection, transaction
from django.db.models import DateTimeField

from hub.locks import app_usage_lock, app_usage_lock_held, xact_lock_first_free
from hub.raw_cursor import raw_cursor

from ..models import ROLLUP_SHARDS, Metric, MetricRollup, MetricUniqueValue, RollupBatch
from .drain_sql import drain_statement
from .metric_sql import SqlMetric, metric_sql
from .rollup_delta import RollupDelta
from .rollup_sql import (
    INSERT_UNIQUE_APP,
    INSERT_UNIQUE_CUSTOMER,
    UPSERT_APP,
    UPSERT_CUSTOMER,
    unique_counted_insert,
    unique_counters_insert,
)

# The advisory-lock class of "a rebuild of this app runs" (only one at a time).
REBUILD_LOCK = 7312
# The advisory-lock class of "a drain counts this shard of this app" (object: app pk * shards + shard).
SHARD_LOCK = 7314
_EVENT_COLUMNS = "id, customer_id, event_name, timestamp, {properties}"
# One rollup row: metric, group key, granularity, bucket, count, value count, sum, min, max,
# latest value, latest at, latest event id (a customer's rows, without the customer).
RollupRow = tuple[int, str, str, datetime, int, int, Any, Any, Any, Any, Any, Any]
# One distinct value: metric, group key, granularity, bucket, value hash.
UniqueRow = tuple[int, str, str, datetime, Any]


@dataclass
class Drained:
    """What a drain took and counted in SQL, and what is left for the Python evaluation."""

    batches: int
    events: int
    ids: list[int] = field(default_factory=list)  # the events' ids, when asked for
    touched: set[tuple[int, int]] = field(default_factory=set)  # (customer pk, metric pk), when asked for
    python_rows: dict[int, list[tuple]] = field(default_factory=dict)  # metric pk: events SQL left


class RollupStore(Protocol):
    def metric_plan(self, metric: Metric, *, app_pk: int) -> SqlMetric | None:
        """The metric as set-based SQL, or None: its events are evaluated in Python."""
        ...

    def batches_drain(self, *, app_pk: int, plans: list[SqlMetric], limit: int, hours_since: datetime | None,
                      want_ids: bool, want_touched: bool) -> Drained:  # fmt: skip
        """Take and delete up to `limit` of the app's pending batches (the oldest no other drain
        holds) and count their events into the `plans`' rollups, in the caller's transaction."""
        ...

    def delta_write(self, delta: RollupDelta) -> None: ...
    def events_by_ids(self, ids: list[int]) -> list[tuple]: ...
    def events_of(self, app_pk: int, names: list[str], chunk: int) -> Iterator[list[tuple]]: ...
    def rebuild_transaction(self, app_pk: int) -> AbstractContextManager[bool]: ...
    def customer_rows_add(
        self, *, customer_pk: int, rows: list[RollupRow], uniques: list[UniqueRow]
    ) -> None: ...


def _sort_key(key: tuple) -> tuple:
    # A stable order (None first) so that concurrent writers lock rows in the same order.
    return tuple((0, "") if v is None else (1, v) for v in key)


def _same(value: Any) -> Any:
    return value


class _BaseRollupStore:
    """What both databases share: the upserts of rows from Python, the events read by id."""

    properties_column = "properties"

    def _dt(self, value: datetime | None) -> Any:
        return value

    def _dec(self, value: Decimal | None) -> Any:
        return value

    def _uid(self, value: Any) -> Any:
        return value

    def _event_rows(self, rows: Iterable[tuple]) -> Iterable[tuple]:
        return rows

    def _uniques_write(self, cursor: Any, unique_customer: list[tuple], unique_app: list[tuple]) -> None:
        raise NotImplementedError

    def delta_write(self, delta: RollupDelta) -> None:
        """Merge `delta` into the rollup tables (in the caller's transaction, under the app's lock)."""
        if not delta:
            return
        dt, dec, uid = self._dt, self._dec, self._uid
        customer_rows: list[tuple] = []
        app_rows: list[tuple] = []
        for key in sorted(delta.cells, key=_sort_key):
            metric_pk, customer, group, gran, bucket = key
            c = delta.cells[key]
            row = (
                metric_pk, customer, group, gran, dt(bucket), c.count, c.value_count, dec(c.sum), dec(c.min),
                dec(c.max), dec(c.latest_value), dt(c.latest_at), c.latest_event_id,
            )  # fmt: skip
            (app_rows if customer is None else customer_rows).append(row)
        unique_customer: list[tuple] = []
        unique_app: list[tuple] = []
        for metric_pk, customer, group, gran, bucket, value in sorted(delta.uniques, key=_sort_key):
            unique_row = (metric_pk, customer, group, gran, dt(bucket), uid(value))
            (unique_app if customer is None else unique_customer).append(unique_row)
        with raw_cursor() as cursor:
            for sql, rows in ((UPSERT_CUSTOMER, customer_rows), (UPSERT_APP, app_rows)):
                if rows:
                    cursor.executemany(sql, rows)
            self._uniques_write(cursor, unique_customer, unique_app)

    def events_by_ids(self, ids: list[int]) -> list[tuple]:
        """The events with these primary keys, properties as JSON text."""
        out: list[tuple] = []
        cols = _EVENT_COLUMNS.format(properties=self.properties_column)
        with raw_cursor() as cursor:
            for i in range(0, len(ids), 1000):
                chunk = ids[i : i + 1000]
                placeholders = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"SELECT {cols} FROM events_usageevent WHERE id IN ({placeholders})", chunk)  # noqa: S608
                out.extend(self._event_rows(cursor.fetchall()))
        return out

    def _events_of_sql(self, names: list[str]) -> str:
        placeholders = ", ".join(["%s"] * len(names))
        return (
            f"SELECT {_EVENT_COLUMNS.format(properties=self.properties_column)} FROM events_usageevent "  # noqa: S608
            f"WHERE app_id = %s AND event_name IN ({placeholders})"
        )

    def customer_rows_add(self, *, customer_pk: int, rows: list[RollupRow], uniques: list[UniqueRow]) -> None:
        """Merge rollup rows and distinct values into a customer's (a customer merge)."""
        dt, dec, uid = self._dt, self._dec, self._uid
        with raw_cursor() as cursor:
            if rows:
                cursor.executemany(
                    UPSERT_CUSTOMER,
                    [
                        (m, customer_pk, g, gr, dt(b), c, vc, dec(s), dec(mn), dec(mx), dec(lv), dt(la), le)
                        for m, g, gr, b, c, vc, s, mn, mx, lv, la, le in rows
                    ],
                )
            if uniques:
                cursor.executemany(
                    INSERT_UNIQUE_CUSTOMER,
                    [(m, customer_pk, g, gr, dt(b), uid(v)) for m, g, gr, b, v in uniques],
                )


_UNNEST_UNIQUES = (
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], "
    "%s::timestamptz[], %s::uuid[])"
)
_UNIQUE_COUNTED_CUSTOMER = unique_counted_insert(_UNNEST_UNIQUES, app_wide=False)
_UNIQUE_COUNTED_APP = unique_counted_insert(_UNNEST_UNIQUES, app_wide=True)


def _shard_take(cursor: Any, app_pk: int) -> int | None:
    """Hold (until the transaction ends) a shard of the app's customers with pending batches that no
    other drain holds, the one of the oldest batch first; None when every such shard is held.

    Drains of one app at once then never merge into the same customer's rows (a busy customer has
    events in every batch): on such a row the second would wait for the first to commit, and two
    drains would count no faster than one. They still meet on the app-wide rows, written last.
    """
    cursor.execute(
        "SELECT shard FROM events_rollupbatch WHERE app_id = %s GROUP BY shard ORDER BY min(id)", [app_pk]
    )
    shards: list[int] = [row[0] for row in cursor.fetchall()]
    base = app_pk * ROLLUP_SHARDS
    key = xact_lock_first_free(cursor, SHARD_LOCK, [base + shard for shard in shards])
    return None if key is None else key - base


class PostgresRollupStore(_BaseRollupStore):
    properties_column = "properties::text"

    def metric_plan(self, metric: Metric, *, app_pk: int) -> SqlMetric | None:
        return metric_sql(metric, app_pk=app_pk)

    def batches_drain(self, *, app_pk: int, plans: list[SqlMetric], limit: int, hours_since: datetime | None,
                      want_ids: bool, want_touched: bool) -> Drained:  # fmt: skip
        """One statement (`drain_sql`): the batches of a shard no other drain holds claimed, their
        events read once, every plan counted."""
        sql = drain_statement(plans, want_ids=want_ids, want_touched=want_touched)
        with raw_cursor() as cursor:
            shard = _shard_take(cursor, app_pk)
            if shard is None:
                return Drained(batches=0, events=0)
            cursor.execute(sql, {"app": app_pk, "shard": shard, "limit": limit, "since": hours_since})
            row = list(cursor.fetchone())
        out = Drained(batches=row.pop(0), events=row.pop(0))
        if want_ids:
            out.ids = row.pop(0) or []
        if plans and want_touched:
            customers, metrics = row.pop(0) or [], row.pop(0) or []
            out.touched = set(zip(customers, metrics, strict=True))
        if plans and any(m.python_rows != "false" for m in plans):
            names = {m.pk: m.event_name for m in plans}
            metric_pks, pks, customers, times, properties = (column or [] for column in row[:5])
            for metric_pk, pk, customer, at, text in zip(
                metric_pks, pks, customers, times, properties, strict=True
            ):
                out.python_rows.setdefault(metric_pk, []).append((pk, customer, names[metric_pk], at, text))
        return out

    def _uniques_write(self, cursor: Any, unique_customer: list[tuple], unique_app: list[tuple]) -> None:
        for sql, rows in ((_UNIQUE_COUNTED_CUSTOMER, unique_customer), (_UNIQUE_COUNTED_APP, unique_app)):
            if rows:
                cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])

    def events_of(self, app_pk: int, names: list[str], chunk: int) -> Iterator[list[tuple]]:
        """The app's events of these names, `chunk` rows at a time (a server-side cursor)."""
        connection.ensure_connection()
        with connection.connection.cursor(name=f"rebuild_{app_pk}") as cursor:
            cursor.itersize = chunk
            cursor.execute(self._events_of_sql(names), [app_pk, *names])
            while rows := cursor.fetchmany(chunk):
                yield rows

    @contextmanager
    def rebuild_transaction(self, app_pk: int) -> Iterator[bool]:
        """A REPEATABLE READ transaction taken under the app's usage lock; False: a rebuild runs.

        The lock first, then the snapshot: a snapshot taken before the lock was granted would miss
        a drain that committed meanwhile (its batches gone, its events not counted for a building
        metric). Inside one transaction a lock is always granted after its statement's snapshot,
        so the locks are held by a transaction of their own, open until the rebuild commits.
        """
        with app_usage_lock_held(app_pk, only_one=REBUILD_LOCK) as held:
            if not held:
                yield False
                return
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield True


class SqliteRollupStore(_BaseRollupStore):
    """SQLite: no arrays, no data-modifying CTEs, datetimes and decimals adapted by Django."""

    def metric_plan(self, metric: Metric, *, app_pk: int) -> SqlMetric | None:
        return None

    def batches_drain(self, *, app_pk: int, plans: list[SqlMetric], limit: int, hours_since: datetime | None,
                      want_ids: bool, want_touched: bool) -> Drained:  # fmt: skip
        """The batches taken and deleted; every event is left to Python (no plan here)."""
        batches = list(
            RollupBatch.objects.filter(app_id=app_pk).order_by("id").values_list("id", "event_ids")[:limit]
        )
        RollupBatch.objects.filter(id__in=[pk for pk, _ in batches]).delete()
        ids = [pk for _, event_ids in batches for pk in event_ids]
        return Drained(batches=len(batches), events=len(ids), ids=ids)

    def _dt(self, value: datetime | None) -> Any:
        return connection.ops.adapt_datetimefield_value(value)

    def _dec(self, value: Decimal | None) -> Any:
        return connection.ops.adapt_decimalfield_value(value)

    def _uid(self, value: Any) -> Any:
        return value.hex

    def _event_rows(self, rows: Iterable[tuple]) -> Iterator[tuple]:
        convert: Callable[..., Any] = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]  # SQLite's
        expression = type("E", (), {"output_field": DateTimeField()})()
        for pk, customer_pk, name, at, props in rows:
            yield pk, customer_pk, name, convert(at, expression, connection), props

    def _uniques_write(self, cursor: Any, unique_customer: list[tuple], unique_app: list[tuple]) -> None:
        """The counted inserts of PostgreSQL, one value at a time."""
        counters: dict[tuple, int] = {}
        for sql, rows in ((INSERT_UNIQUE_CUSTOMER, unique_customer), (INSERT_UNIQUE_APP, unique_app)):
            for row in rows:
                cursor.execute(sql, row)
                if cursor.rowcount == 1 and row[3] != "h":
                    counters[row[:5]] = counters.get(row[:5], 0) + 1
        for key, n in counters.items():
            sql = UPSERT_APP if key[1] is None else UPSERT_CUSTOMER
            cursor.execute(sql, (*key, n, n, None, None, None, None, None, None))

    def events_of(self, app_pk: int, names: list[str], chunk: int) -> Iterator[list[tuple]]:
        with connection.cursor() as cursor:
            cursor.execute(self._events_of_sql(names), [app_pk, *names])
            while rows := cursor.fetchmany(chunk):
                yield list(self._event_rows(rows))

    @contextmanager
    def rebuild_transaction(self, app_pk: int) -> Iterator[bool]:
        """A transaction under the app's usage lock (SQLite's transactions are serializable)."""
        with transaction.atomic():
            app_usage_lock(app_pk)
            yield True


def unique_counters_recount(*, metric_pks: list[int], customer_pk: int | None = None) -> None:
    """Set the distinct-value counters of unique-count metrics from their distinct values."""
    if not metric_pks:
        return
    if customer_pk is not None:
        MetricRollup.objects.filter(customer_id=customer_pk, metric_id__in=metric_pks).delete()
    else:
        metric_rows_delete(metric_pks=metric_pks, models=(MetricRollup,))
    where = ["metric_id IN (" + ", ".join(["%s"] * len(metric_pks)) + ")", "granularity <> 'h'"]
    params: list[Any] = list(metric_pks)
    if customer_pk is not None:
        where.append("customer_id = %s")
        params.append(customer_pk)
    with raw_cursor() as cursor:
        cursor.execute(unique_counters_insert(" AND ".join(where)), params)


def metric_rows_delete(
    *, metric_pks: list[int], models: tuple[type[MetricRollup | MetricUniqueValue], ...] = (
        MetricRollup, MetricUniqueValue), customers: bool = True
) -> None:  # fmt: skip
    """Delete these metrics' rollup rows (and distinct values): app-wide, and the customers' too.

    The tables have no index of metric_id alone (events.models): the app-wide rows are found by
    the metric's unique index; the customers' rows by reading the table (their index leads with the
    customer). One customer at a time by that index was measured slower: the customers' 9.7 M
    distinct values of a metric, spread over the whole table, took 60 s that way and 5.0 s in one read.
    """
    if not metric_pks:
        return
    for model in models:
        model.objects.filter(metric_id__in=metric_pks, customer__isnull=True).delete()
        if customers:
            model.objects.filter(metric_id__in=metric_pks, customer__isnull=False).delete()


def metric_rows_on_delete(sender: type[Metric], instance: Metric, origin: Any = None, **kwargs: Any) -> None:
    """A metric's rows go with it (a `pre_delete` receiver: the foreign keys do not cascade).

    A metric deleted with its app (the app's or workspace's deletion) goes with the app's
    customers, whose deletion takes their rows by their index: only the app-wide rows are left to
    delete here, without reading the tables once per metric.
    """
    alone = isinstance(origin, Metric) or getattr(origin, "model", None) is Metric
    metric_rows_delete(metric_pks=[instance.pk], customers=alone)


@functools.cache
def _store_for(vendor: str) -> RollupStore:
    return PostgresRollupStore() if vendor == "postgresql" else SqliteRollupStore()


def rollup_store() -> RollupStore:
    """The rollup store of the default connection's database."""
    return _store_for(connection.vendor)
