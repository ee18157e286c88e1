"""Rollups: usage metrics kept up to date as events arrive, each event counted exactly once.

Every statement that stores events also stores a `RollupBatch` with the new events' ids (same
statement, same commit). A drain takes the app's usage lock (shared with other drains), claims
and deletes pending batches no other drain holds, evaluates their events against the app's ready
metrics, merges the result into hour and day rows (`MetricRollup`) and distinct values
(`MetricUniqueValue`) and checks plan limits, all in one transaction (on PostgreSQL the claim and
the counting are one statement, `drain_sql`). A killed worker's transaction rolls back and the
batches are taken again, so an event is never counted twice or lost.

A new or changed metric is built from the stored events: under the same lock (exclusive), in one REPEATABLE
READ snapshot, every event of the app not in a pending batch is counted, and the metric becomes
ready for the batches that follow. Events are bucketed by their own timestamp, so late events
land in their own period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from hub.locks import app_usage_lock
from hub.models import Customer
from hub.raw_cursor import raw_cursor
from hub.task_coalescing import CoalescedTask

from ..models import Metric, MetricRollup, MetricUniqueValue, PlanUsageLimit, RollupBatch
from . import metric_sql
from .definitions import CompiledMetric
from .limits import usage_limits_check
from .periods import hour_rows_since
from .rollup_delta import RollupDelta, delta_of
from .rollup_store import metric_rows_delete, rollup_store, unique_counters_recount

DRAIN_TASK = "events.rollups_drain"


# --- Draining pending batches -----------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    batches: int
    events: int
    touched: frozenset[tuple[int, int]] = frozenset()


# How many events one drain transaction counts, about: enough that a statement's fixed costs vanish
# per event, few enough that a transaction stays short.
DRAIN_EVENTS = 20_000
MAX_BATCHES = 5_000


def rollups_drain_app(*, app_pk: int, max_batches: int = 200) -> DrainResult:
    """Count up to `max_batches` of the app's pending batches into its ready metrics; check limits.

    Several drains of one app run at once (the usage lock shared; each takes batches no other
    holds): each event is counted by the transaction that deletes its batch, exactly once.
    """
    with transaction.atomic():
        app_usage_lock(app_pk, shared=True)
        ready = list(Metric.objects.filter(app_id=app_pk, status=Metric.Status.READY))
        store = rollup_store()
        plans = {m.pk: store.metric_plan(m, app_pk=app_pk) for m in ready}
        in_python = [CompiledMetric.of(m) for m in ready if plans[m.pk] is None]
        # Which customers were touched is only asked for when a plan limits one of the metrics.
        limited = bool(ready) and PlanUsageLimit.objects.filter(metric__in=ready).exists()
        hours_since = hour_rows_since()
        drained = store.batches_drain(
            app_pk=app_pk, plans=[p for p in plans.values() if p is not None], limit=max_batches,
            hours_since=hours_since, want_ids=bool(in_python), want_touched=limited,
        )  # fmt: skip
        if not drained.batches:
            return DrainResult(0, 0)
        delta = RollupDelta(hours_since=hours_since)
        by_pk = {m.pk: m for m in ready}
        for metric_pk, rows in drained.python_rows.items():
            delta_of([CompiledMetric.of(by_pk[metric_pk])], rows, into=delta)
        if in_python:
            delta_of(in_python, store.events_by_ids(drained.ids), into=delta)
        store.delta_write(delta)
        touched = drained.touched | delta.touched
        if touched and limited:
            usage_limits_check(app_pk=app_pk, touched=touched)
        return DrainResult(drained.batches, drained.events, frozenset(touched))


def rollups_drain(*, app_pks: Iterable[int] | None = None, max_rounds: int = 50) -> int:
    """Drain pending batches of these apps (default: every app with some); return events counted.

    Each round takes about DRAIN_EVENTS events of one shard of the app's customers: the number of
    batches follows the size of the batches just taken (a bulk request's thousand events, or single
    events). The app is done when a round finds no batch in the shards no other drain holds.
    """
    apps = list(app_pks) if app_pks is not None else rollups_pending_apps()
    total = 0
    for app_pk in apps:
        batches = 16
        for _ in range(max_rounds):
            result = rollups_drain_app(app_pk=app_pk, max_batches=batches)
            total += result.events
            if not result.batches:
                break
            if result.batches == batches:
                batches = max(1, min(MAX_BATCHES, DRAIN_EVENTS * result.batches // max(result.events, 1)))
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
    with rollup_store().rebuild_transaction(app_pk) as held:
        if not held:
            return []
        return _rebuild_in_snapshot(app_pk, chunk)


def _rebuild_in_snapshot(app_pk: int, chunk: int) -> list[int]:
    building = list(Metric.objects.filter(app_id=app_pk, status=Metric.Status.BUILDING))
    if not building:
        return []
    versions = {m.pk: m.version for m in building}
    metric_rows_delete(metric_pks=list(versions))
    pending = sorted(
        {
            pk
            for ids in RollupBatch.objects.filter(app_id=app_pk).values_list("event_ids", flat=True)
            for pk in ids
        }
    )
    hours_since = hour_rows_since()
    store = rollup_store()
    in_python = []
    for metric in building:
        plan = store.metric_plan(metric, app_pk=app_pk)
        if plan is None:
            in_python.append(CompiledMetric.of(metric))
            continue
        # SQL counts what it evaluates exactly; the few events it cannot are counted by Python.
        with raw_cursor() as cursor:
            metric_sql.build(cursor, plan, pending=pending, hours_since=hours_since)
            cursor.execute(metric_sql.python_rows_select(plan, metric_sql.not_pending(pending)))
            rows = cursor.fetchall()
        store.delta_write(delta_of([CompiledMetric.of(metric)], rows, hours_since=hours_since))
    if in_python:
        skip = set(pending)
        names = sorted({m.event_name for m in in_python})
        for rows in store.events_of(app_pk, names, chunk):
            kept = (r for r in rows if r[0] not in skip)
            store.delta_write(delta_of(in_python, kept, hours_since=hours_since))
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


# --- Customer merge ---------------------------------------------------------------------------


def rollups_customer_merge(*, keep: Customer, remove: Customer) -> None:
    """Add `remove`'s rollup rows and distinct values onto `keep`'s, then drop `remove`'s.

    Registered with the core's customer merge (`EventsConfig.ready()`), which holds the app's usage
    lock and its transaction.
    """
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
    rollup_store().customer_rows_add(customer_pk=keep.pk, rows=rows, uniques=uniques)
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
