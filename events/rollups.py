"""Rollups: usage metrics kept up to date as events arrive, each event counted exactly once.

Every statement that stores events also stores a `RollupBatch` with the new events' ids (same
statement, same commit). A worker takes the app's usage lock, reads the app's pending batches,
evaluates each event against the app's ready metrics, merges the result into hour and day rows
(`MetricRollup`) and distinct values (`MetricUniqueValue`), checks plan limits, and deletes the
batches, all in one transaction. A killed worker's transaction rolls back and the batches are
taken again, so an event is never counted twice or lost.

A new or changed metric is built from the stored events: under the same lock, in one REPEATABLE
READ snapshot, every event of the app not in a pending batch is counted, and the metric becomes
ready for the batches that follow. Events are bucketed by their own timestamp, so late events
land in their own period.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from hub.locks import app_usage_lock, app_usage_lock_held
from hub.task_coalescing import CoalescedTask

from . import rollups_sql
from .metrics import CompiledMetric, Evaluated, properties_load
from .models import Metric, MetricRollup, MetricUniqueValue, RollupBatch
from .rollups_sql import metric_sql

DRAIN_TASK = "events.rollups_drain"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REBUILD_LOCK = 7312


# --- Buckets ----------------------------------------------------------------------------------


def hour_start(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(ts: datetime) -> datetime:
    """Monday of the ISO week (UTC)."""
    d = day_start(ts)
    return d - timedelta(days=d.weekday())


def month_start(ts: datetime) -> datetime:
    return day_start(ts).replace(day=1)


def hour_rows_since(now: datetime | None = None) -> datetime | None:
    """The first hour whose rows are kept (HUB_METRICS_HOUR_ROWS_HOURS before this hour); None: all."""
    hours = settings.HUB_METRICS_HOUR_ROWS_HOURS
    if not hours:
        return None
    return hour_start(now or timezone.now()) - timedelta(hours=hours)


# --- Accumulating a delta ---------------------------------------------------------------------


@dataclass
class _Cell:
    count: int = 0
    value_count: int = 0
    sum: Decimal | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    latest_value: Decimal | None = None
    latest_at: datetime | None = None
    latest_event_id: int | None = None

    def add(self, value: Decimal | None, at: datetime, event_pk: int) -> None:
        self.count += 1
        if value is None:
            return
        self.value_count += 1
        self.sum = value if self.sum is None else self.sum + value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max
        if self.latest_at is None or (at, event_pk) > (self.latest_at, self.latest_event_id):
            self.latest_value, self.latest_at, self.latest_event_id = value, at, event_pk


@dataclass
class RollupDelta:
    """What a set of events adds to the rollups, before it is merged into the tables.

    Hour rows older than `hours_since` are not written (only recent hours are read).
    """

    hours_since: datetime | None = None
    cells: dict[tuple, _Cell] = field(default_factory=dict)
    uniques: set[tuple] = field(default_factory=set)
    touched: set[tuple[int, int]] = field(default_factory=set)  # (customer pk, metric pk)

    def _buckets(self, at: datetime, grans: str) -> list[tuple[str, datetime]]:
        out = []
        hour = hour_start(at)
        if self.hours_since is None or hour >= self.hours_since:
            out.append(("h", hour))
        starts = {"d": day_start, "w": week_start, "m": month_start}
        out += [(g, starts[g](at)) for g in grans if g in starts]
        if "a" in grans:
            out.append(("a", EPOCH))
        return out

    def add(self, metric: CompiledMetric, *, event_pk: int, customer_pk: int, at: datetime,
            result: Evaluated) -> None:  # fmt: skip
        groups = ("",) if result.group is None else ("", result.group)
        self.touched.add((customer_pk, metric.pk))
        if metric.unique:
            if result.unique is None:
                return
            buckets = self._buckets(at, "dwma")
            for customer in (customer_pk, None):
                for group in groups:
                    for gran, bucket in buckets:
                        self.uniques.add((metric.pk, customer, group, gran, bucket, result.unique))
            return
        buckets = self._buckets(at, "d")
        for customer in (customer_pk, None):
            for group in groups:
                for gran, bucket in buckets:
                    key = (metric.pk, customer, group, gran, bucket)
                    cell = self.cells.get(key)
                    if cell is None:
                        cell = self.cells[key] = _Cell()
                    cell.add(result.number, at, event_pk)

    def __bool__(self) -> bool:
        return bool(self.cells or self.uniques)


def delta_of(metrics: list[CompiledMetric], events: Iterable[tuple], *, hours_since: datetime | None = None,
             into: RollupDelta | None = None) -> RollupDelta:  # fmt: skip
    """Evaluate events `(pk, customer_pk, event_name, timestamp, properties)` against metrics."""
    delta = into if into is not None else RollupDelta(hours_since=hours_since)
    by_name: dict[str, list[CompiledMetric]] = {}
    for m in metrics:
        by_name.setdefault(m.event_name, []).append(m)
    if not by_name:
        return delta
    for pk, customer_pk, name, at, props in events:
        matching = by_name.get(name)
        if not matching:
            continue
        properties = properties_load(props)
        for metric in matching:
            result = metric.evaluate(properties)
            if result is not None:
                delta.add(metric, event_pk=pk, customer_pk=customer_pk, at=at, result=result)
    return delta


# --- Writing a delta --------------------------------------------------------------------------

_T = "events_metricrollup"
_ROLLUP_COLUMNS = (
    "metric_id, customer_id, group_key, granularity, bucket, count, value_count, sum, min, max, "
    "latest_value, latest_at, latest_event_id"
)
_LATER = (
    f"(excluded.latest_at IS NOT NULL AND ({_T}.latest_at IS NULL OR excluded.latest_at > {_T}.latest_at"
    f" OR (excluded.latest_at = {_T}.latest_at AND excluded.latest_event_id > {_T}.latest_event_id)))"
)
_MERGE = f"""
    count = {_T}.count + excluded.count,
    value_count = {_T}.value_count + excluded.value_count,
    sum = CASE WHEN excluded.sum IS NULL THEN {_T}.sum WHEN {_T}.sum IS NULL THEN excluded.sum
               ELSE {_T}.sum + excluded.sum END,
    min = CASE WHEN excluded.min IS NULL THEN {_T}.min
               WHEN {_T}.min IS NULL OR excluded.min < {_T}.min THEN excluded.min ELSE {_T}.min END,
    max = CASE WHEN excluded.max IS NULL THEN {_T}.max
               WHEN {_T}.max IS NULL OR excluded.max > {_T}.max THEN excluded.max ELSE {_T}.max END,
    latest_value = CASE WHEN {_LATER} THEN excluded.latest_value ELSE {_T}.latest_value END,
    latest_at = CASE WHEN {_LATER} THEN excluded.latest_at ELSE {_T}.latest_at END,
    latest_event_id = CASE WHEN {_LATER} THEN excluded.latest_event_id ELSE {_T}.latest_event_id END
"""
_VALUES13 = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_ON_CUSTOMER = "(metric_id, customer_id, group_key, granularity, bucket) WHERE customer_id IS NOT NULL"
_ON_APP = "(metric_id, group_key, granularity, bucket) WHERE customer_id IS NULL"
_UPSERT_CUSTOMER = (
    f"INSERT INTO {_T} ({_ROLLUP_COLUMNS}) VALUES {_VALUES13} "  # noqa: S608 (constants)
    f"ON CONFLICT {_ON_CUSTOMER} DO UPDATE SET {_MERGE}"
)
_UPSERT_APP = (
    f"INSERT INTO {_T} ({_ROLLUP_COLUMNS}) VALUES {_VALUES13} "  # noqa: S608 (constants)
    f"ON CONFLICT {_ON_APP} DO UPDATE SET {_MERGE}"
)
_U = "events_metricuniquevalue"
_UNIQUE_COLUMNS = "metric_id, customer_id, group_key, granularity, bucket, value_hash"
_ON_UNIQUE_CUSTOMER = (
    "(metric_id, customer_id, group_key, granularity, bucket, value_hash) WHERE customer_id IS NOT NULL"
)
_ON_UNIQUE_APP = "(metric_id, group_key, granularity, bucket, value_hash) WHERE customer_id IS NULL"
_INSERT_UNIQUE_CUSTOMER = (
    f"INSERT INTO {_U} ({_UNIQUE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
    f"ON CONFLICT {_ON_UNIQUE_CUSTOMER} DO NOTHING"
)
_INSERT_UNIQUE_APP = (
    f"INSERT INTO {_U} ({_UNIQUE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
    f"ON CONFLICT {_ON_UNIQUE_APP} DO NOTHING"
)


def unique_counted_insert(values_select: str, *, app_wide: bool) -> str:
    """Insert the distinct values `values_select` yields and count the new ones in their counters.

    `values_select` gives (metric_id, customer_id, group_key, granularity, bucket, value_hash).
    A value first seen in a bucket adds one to that bucket's counter (not for hours: the last 24
    hours are counted from the hour rows themselves).
    """
    on_unique, on_rollup = (_ON_UNIQUE_APP, _ON_APP) if app_wide else (_ON_UNIQUE_CUSTOMER, _ON_CUSTOMER)
    return f"""
    WITH new AS (
        INSERT INTO {_U} ({_UNIQUE_COLUMNS})
        {values_select}
        ON CONFLICT {on_unique} DO NOTHING
        RETURNING metric_id, customer_id, group_key, granularity, bucket
    )
    INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count)
    SELECT metric_id, customer_id, group_key, granularity, bucket, count(*), count(*)
    FROM new WHERE granularity <> 'h' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT {on_rollup} DO UPDATE SET count = {_T}.count + excluded.count,
        value_count = {_T}.value_count + excluded.value_count
    """  # noqa: S608 (constants and the caller's SQL)


_UNNEST_UNIQUES = (
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], "
    "%s::timestamptz[], %s::uuid[])"
)
_UNIQUE_COUNTED_CUSTOMER = unique_counted_insert(_UNNEST_UNIQUES, app_wide=False)
_UNIQUE_COUNTED_APP = unique_counted_insert(_UNNEST_UNIQUES, app_wide=True)


def _adapters():
    ops = connection.ops
    if connection.vendor == "postgresql":
        return (lambda d: d), (lambda x: x), (lambda u: u)
    return ops.adapt_datetimefield_value, ops.adapt_decimalfield_value, (lambda u: u.hex)


def delta_write(delta: RollupDelta) -> None:
    """Merge `delta` into the rollup tables (in the caller's transaction, under the app's lock)."""
    if not delta:
        return
    dt, dec, uid = _adapters()
    customer_rows, app_rows = [], []
    for key in sorted(delta.cells, key=_sort_key):
        metric_pk, customer, group, gran, bucket = key
        c = delta.cells[key]
        row = (
            metric_pk, customer, group, gran, dt(bucket), c.count, c.value_count, dec(c.sum), dec(c.min),
            dec(c.max), dec(c.latest_value), dt(c.latest_at), c.latest_event_id,
        )  # fmt: skip
        (app_rows if customer is None else customer_rows).append(row)
    unique_customer, unique_app = [], []
    for metric_pk, customer, group, gran, bucket, value in sorted(delta.uniques, key=_sort_key):
        row = (metric_pk, customer, group, gran, dt(bucket), uid(value))
        (unique_app if customer is None else unique_customer).append(row)
    with _cursor() as cursor:
        for sql, rows in ((_UPSERT_CUSTOMER, customer_rows), (_UPSERT_APP, app_rows)):
            if rows:
                cursor.executemany(sql, rows)
        if connection.vendor == "postgresql":
            for sql, rows in ((_UNIQUE_COUNTED_CUSTOMER, unique_customer), (_UNIQUE_COUNTED_APP, unique_app)):
                if rows:
                    cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        else:
            _uniques_write_one_by_one(cursor, unique_customer, unique_app)


def _uniques_write_one_by_one(cursor, unique_customer: list[tuple], unique_app: list[tuple]) -> None:
    """The same as the counted inserts above, for databases without data-modifying CTEs (SQLite)."""
    counters: dict[tuple, int] = {}
    for sql, rows in ((_INSERT_UNIQUE_CUSTOMER, unique_customer), (_INSERT_UNIQUE_APP, unique_app)):
        for row in rows:
            cursor.execute(sql, row)
            if cursor.rowcount == 1 and row[3] != "h":
                counters[row[:5]] = counters.get(row[:5], 0) + 1
    for key, n in counters.items():
        sql = _UPSERT_APP if key[1] is None else _UPSERT_CUSTOMER
        cursor.execute(sql, (*key, n, n, None, None, None, None, None, None))


def unique_counters_recount(*, metric_pks: list[int], customer_pk: int | None = None) -> None:
    """Set the distinct-value counters of unique-count metrics from their distinct values."""
    if not metric_pks:
        return
    scope = MetricRollup.objects.filter(metric_id__in=metric_pks)
    if customer_pk is not None:
        scope = scope.filter(customer_id=customer_pk)
    scope.delete()
    where = ["metric_id IN (" + ", ".join(["%s"] * len(metric_pks)) + ")", "granularity <> 'h'"]
    params: list[Any] = list(metric_pks)
    if customer_pk is not None:
        where.append("customer_id = %s")
        params.append(customer_pk)
    with _cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count) "  # noqa: S608
            f"SELECT metric_id, customer_id, group_key, granularity, bucket, count(*), count(*) FROM {_U} "
            f"WHERE {' AND '.join(where)} GROUP BY metric_id, customer_id, group_key, granularity, bucket",
            params,
        )


def _sort_key(key: tuple) -> tuple:
    # A stable order (None first) so that concurrent writers lock rows in the same order.
    return tuple((0, "") if v is None else (1, v) for v in key)


def _cursor():
    from hub.raw_cursor import raw_cursor

    return raw_cursor()


# --- Reading events ---------------------------------------------------------------------------

_EVENT_COLUMNS = "id, customer_id, event_name, timestamp, properties"


def _event_rows(rows: Iterable[tuple]) -> Iterator[tuple]:
    convert = None
    if connection.vendor != "postgresql":
        convert = connection.ops.convert_datetimefield_value
        from django.db.models import DateTimeField

        expression = type("E", (), {"output_field": DateTimeField()})()
    for pk, customer_pk, name, at, props in rows:
        if convert is not None:
            at = convert(at, expression, connection)
        yield pk, customer_pk, name, at, props


def _properties_column() -> str:
    return "properties::text" if connection.vendor == "postgresql" else "properties"


def events_by_ids(ids: list[int]) -> list[tuple]:
    """The events with these primary keys, properties as JSON text."""
    out: list[tuple] = []
    cols = _EVENT_COLUMNS.replace("properties", _properties_column())
    with _cursor() as cursor:
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT {cols} FROM events_usageevent WHERE id IN ({placeholders})", chunk)  # noqa: S608
            out.extend(_event_rows(cursor.fetchall()))
    return out


# --- Draining pending batches -----------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    batches: int
    events: int
    touched: frozenset[tuple[int, int]] = frozenset()


def rollups_drain_app(*, app_pk: int, max_batches: int = 200) -> DrainResult:
    """Count the app's pending batches (up to `max_batches`) into its ready metrics; check limits."""
    from .usage_limits import usage_limits_check

    with transaction.atomic():
        app_usage_lock(app_pk)
        batches = list(
            RollupBatch.objects.filter(app_id=app_pk)
            .order_by("id")
            .values_list("id", "event_ids")[:max_batches]
        )
        if not batches:
            return DrainResult(0, 0)
        ready = list(Metric.objects.filter(app_id=app_pk, status=Metric.Status.READY))
        ids = [pk for _, event_ids in batches for pk in event_ids]
        touched = rollups_count(ready, app_pk=app_pk, ids=ids, hours_since=hour_rows_since())
        RollupBatch.objects.filter(id__in=[pk for pk, _ in batches]).delete()
        if touched:
            usage_limits_check(app_pk=app_pk, touched=touched)
        return DrainResult(len(batches), len(ids), frozenset(touched))


def rollups_count(metrics: list[Metric], *, app_pk: int, ids: list[int],
                  hours_since: datetime | None) -> set[tuple[int, int]]:  # fmt: skip
    """Merge the events `ids` into the metrics' rollups; return the (customer, metric) pairs touched.

    On PostgreSQL each metric SQL can mirror is counted by a few set-based statements (its exotic
    events, and the metrics it cannot mirror, by the Python evaluation).
    """
    if not metrics:
        return set()
    plans = {m.pk: metric_sql(m, app_pk=app_pk) for m in metrics} if connection.vendor == "postgresql" else {}
    in_python = [CompiledMetric.of(m) for m in metrics if plans.get(m.pk) is None]
    delta = RollupDelta(hours_since=hours_since)
    touched: set[tuple[int, int]] = set()
    scope = rollups_sql.only(ids) if any(plans.values()) else ""
    with _cursor() as cursor:
        for m in metrics:
            plan = plans.get(m.pk)
            if plan is None:
                continue
            rollups_sql.drain(cursor, plan, ids=ids, hours_since=hours_since)
            cursor.execute(rollups_sql.customers_select(plan, scope))
            touched |= {(customer_pk, m.pk) for (customer_pk,) in cursor.fetchall()}
            cursor.execute(rollups_sql.python_rows_select(plan, scope))
            delta_of([CompiledMetric.of(m)], cursor.fetchall(), into=delta)
    if in_python:
        delta_of(in_python, events_by_ids(ids), into=delta)
    delta_write(delta)
    return touched | delta.touched


def rollups_drain(*, app_pks: Iterable[int] | None = None, max_rounds: int = 50) -> int:
    """Drain pending batches of these apps (default: every app with some); return events counted."""
    apps = list(app_pks) if app_pks is not None else rollups_pending_apps()
    total = 0
    for app_pk in apps:
        for _ in range(max_rounds):
            result = rollups_drain_app(app_pk=app_pk)
            total += result.events
            if result.batches == 0:
                break
    return total


def rollups_pending_apps(*, older_than: datetime | None = None) -> list[int]:
    qs = RollupBatch.objects.all()
    if older_than is not None:
        qs = qs.filter(created_at__lt=older_than)
    return sorted(set(qs.values_list("app_id", flat=True)[:10_000]))


# --- Building a metric from stored events -----------------------------------------------------


def metrics_rebuild(*, app_pk: int, chunk: int = 5000) -> list[int]:
    """Build every `building` metric of the app from its stored events; return the metrics built.

    Only one rebuild runs per app (a second one returns at once). On PostgreSQL it holds the app's
    usage lock across its snapshot, so no drain moves events between "pending" and "counted".
    """
    # Inside a caller's transaction (a test, hub_apply) it runs in that transaction as it is.
    if connection.in_atomic_block:
        app_usage_lock(app_pk)
        return _rebuild_in_snapshot(app_pk, chunk)
    if connection.vendor != "postgresql":
        with transaction.atomic():
            app_usage_lock(app_pk)
            return _rebuild_in_snapshot(app_pk, chunk)
    # The lock first, then the snapshot: a snapshot taken before the lock was granted would miss
    # a drain that committed meanwhile (its batches gone, its events not counted for a building
    # metric). Inside one transaction a lock is always granted after its statement's snapshot,
    # so the locks are held by a transaction of their own, open until the rebuild commits.
    with app_usage_lock_held(app_pk, only_one=_REBUILD_LOCK) as held:
        if not held:
            return []
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return _rebuild_in_snapshot(app_pk, chunk)


def _rebuild_in_snapshot(app_pk: int, chunk: int) -> list[int]:
    building = list(Metric.objects.filter(app_id=app_pk, status=Metric.Status.BUILDING))
    if not building:
        return []
    versions = {m.pk: m.version for m in building}
    MetricRollup.objects.filter(metric__in=building).delete()
    MetricUniqueValue.objects.filter(metric__in=building).delete()
    pending = sorted(
        {
            pk
            for ids in RollupBatch.objects.filter(app_id=app_pk).values_list("event_ids", flat=True)
            for pk in ids
        }
    )
    hours_since = hour_rows_since()
    in_python = []
    for metric in building:
        plan = metric_sql(metric, app_pk=app_pk) if connection.vendor == "postgresql" else None
        if plan is None:
            in_python.append(CompiledMetric.of(metric))
            continue
        # SQL counts what it evaluates exactly; the few events it cannot are counted by Python.
        with _cursor() as cursor:
            rollups_sql.build(cursor, plan, pending=pending, hours_since=hours_since)
            cursor.execute(rollups_sql.python_rows_select(plan, rollups_sql.not_pending(pending)))
            rows = cursor.fetchall()
        delta_write(delta_of([CompiledMetric.of(metric)], rows, hours_since=hours_since))
    if in_python:
        skip = set(pending)
        names = sorted({m.event_name for m in in_python})
        for rows in _events_of(app_pk, names, chunk):
            delta_write(delta_of(in_python, (r for r in rows if r[0] not in skip), hours_since=hours_since))
    unique_counters_recount(metric_pks=[m.pk for m in building if m.aggregation == Metric.Aggregation.UNIQUE])
    now = timezone.now()
    built = []
    for pk, version in versions.items():
        # Under REPEATABLE READ, a definition changed meanwhile fails this update (serialization
        # failure): the rebuild rolls back and the task runs again for the new version.
        if Metric.objects.filter(pk=pk, version=version, status=Metric.Status.BUILDING).update(
            status=Metric.Status.READY, built_at=now
        ):
            built.append(pk)
    return built


def _events_of(app_pk: int, names: list[str], chunk: int) -> Iterator[list[tuple]]:
    placeholders = ", ".join(["%s"] * len(names))
    sql = (
        f"SELECT {_EVENT_COLUMNS.replace('properties', _properties_column())} FROM events_usageevent "  # noqa: S608
        f"WHERE app_id = %s AND event_name IN ({placeholders})"
    )
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor(name=f"rebuild_{app_pk}") as cursor:
            cursor.itersize = chunk
            cursor.execute(sql, [app_pk, *names])
            while rows := cursor.fetchmany(chunk):
                yield rows
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, [app_pk, *names])
        while rows := cursor.fetchmany(chunk):
            yield list(_event_rows(rows))


# --- Customer merge ---------------------------------------------------------------------------


def rollups_customer_merge(*, keep: Any, remove: Any) -> None:
    """Add `remove`'s rollup rows and distinct values onto `keep`'s, then drop `remove`'s.

    Called by the core's customer merge with the app's usage lock held.
    """
    dt, dec, uid = _adapters()
    rows = list(
        MetricRollup.objects.filter(customer=remove).values_list(
            "metric_id", "group_key", "granularity", "bucket", "count", "value_count", "sum", "min", "max",
            "latest_value", "latest_at", "latest_event_id",
        )
    )  # fmt: skip
    uniques = list(
        MetricUniqueValue.objects.filter(customer=remove).values_list(
            "metric_id", "group_key", "granularity", "bucket", "value_hash"
        )
    )
    MetricRollup.objects.filter(customer=remove).delete()
    MetricUniqueValue.objects.filter(customer=remove).delete()
    # Distinct-value counters do not add up (both may have seen a value): counted again below.
    unique_pks = set(
        Metric.objects.filter(app_id=keep.app_id, aggregation=Metric.Aggregation.UNIQUE).values_list(
            "pk", flat=True
        )
    )
    rows = [r for r in rows if r[0] not in unique_pks]
    with _cursor() as cursor:
        if rows:
            cursor.executemany(
                _UPSERT_CUSTOMER,
                [
                    (m, keep.pk, g, gr, dt(b), c, vc, dec(s), dec(mn), dec(mx), dec(lv), dt(la), le)
                    for m, g, gr, b, c, vc, s, mn, mx, lv, la, le in rows
                ],
            )
        if uniques:
            cursor.executemany(
                _INSERT_UNIQUE_CUSTOMER, [(m, keep.pk, g, gr, dt(b), uid(v)) for m, g, gr, b, v in uniques]
            )
    unique_counters_recount(metric_pks=sorted(unique_pks), customer_pk=keep.pk)


# --- Pruning hour rows ------------------------------------------------------------------------


def rollups_hours_prune(*, now: datetime | None = None) -> int:
    """Delete hour rows (and hourly distinct values) older than HUB_METRICS_HOUR_ROWS_HOURS."""
    since = hour_rows_since(now)
    if since is None:
        return 0
    deleted, _ = MetricRollup.objects.filter(granularity="h", bucket__lt=since).delete()
    more, _ = MetricUniqueValue.objects.filter(granularity="h", bucket__lt=since).delete()
    return deleted + more


# --- Enqueueing drains ------------------------------------------------------------------------

# Each commit of events asks; the process sends one drain task (with the apps asked for) per window:
# a quarter second, as counts and billing signals need not follow the events by milliseconds and
# a busy inbox commits events many times a second.
rollups_enqueue = CoalescedTask(DRAIN_TASK, seconds=0.25)
