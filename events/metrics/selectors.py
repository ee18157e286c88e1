"""Read paths of usage metrics: values over a time range, reports per period, a customer's usage.

All values come from the rollups (`MetricRollup` hour and day rows, `MetricUniqueValue` for
unique counts), never from a scan of the raw events. Periods are UTC: days, ISO weeks (Monday)
and calendar months. Rolling windows count whole buckets including the current one: "last 24 h"
is the current hour and the 23 before it, "last 7 days" today and the 6 days before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db.models import Count, Manager, Q, QuerySet
from django.utils import timezone

from hub.errors import HubError
from hub.models import Customer

from ..models import Metric, MetricRollup, MetricUniqueValue
from .definitions import group_label
from .periods import (
    PERIODS,
    as_utc,
    billing_period,
    date_start,
    day_start,
    hour_start,
    month_start,
    period_back,
    period_buckets,
    period_next,
    period_start,
)

# Mantle's spans when no range is given: 90 days, 12 weeks, 12 months (the current one included).
DEFAULT_SPAN = {"daily": 90, "weekly": 12, "monthly": 12}
GROUPS_SHOWN = 20
# A metric's value: a count, a decimal, or None (no value yet for min, max, average, latest).
Value = Decimal | int | None
# Unique counts are not additive: each period reads its own distinct-value counter.
UNIQUE_GRANULARITY = {"daily": "d", "weekly": "w", "monthly": "m"}


# --- Combining rollup rows --------------------------------------------------------------------

_ROW_FIELDS = ("count", "value_count", "sum", "min", "max", "latest_value", "latest_at", "latest_event_id")


def combine(aggregation: str, rows: Iterable[Mapping[str, Any]]) -> Value:
    """The metric's value over rollup rows (dicts with _ROW_FIELDS). Empty: 0 for count and sum."""
    count = value_count = 0
    total = low = high = None
    latest: tuple | None = None
    latest_value = None
    for r in rows:
        count += r["count"]
        value_count += r["value_count"]
        if r["sum"] is not None:
            total = r["sum"] if total is None else total + r["sum"]
        if r["min"] is not None and (low is None or r["min"] < low):
            low = r["min"]
        if r["max"] is not None and (high is None or r["max"] > high):
            high = r["max"]
        if r["latest_at"] is not None and (latest is None or (r["latest_at"], r["latest_event_id"]) > latest):
            latest, latest_value = (r["latest_at"], r["latest_event_id"]), r["latest_value"]
    if aggregation == "count":
        return count
    if aggregation == "sum":
        return total if total is not None else Decimal(0)
    if aggregation == "min":
        return low
    if aggregation == "max":
        return high
    if aggregation == "average":
        return (total / value_count) if value_count and total is not None else None
    if aggregation == "latest":
        return latest_value
    raise ValueError(aggregation)


def as_number(value: Decimal | int | float | None) -> int | float | None:
    """A value for JSON: integers stay integers."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    d = Decimal(value)
    if d == d.to_integral_value() and abs(d) < 2**53:
        return int(d)
    return float(d)


# The metrics' two kinds of bucket rows, read the same way.
_Bucket = TypeVar("_Bucket", MetricRollup, MetricUniqueValue)


def _scope(
    rows: Manager[_Bucket], *, metric: Metric, customer: Customer | None, group: str = ""
) -> QuerySet[_Bucket]:
    qs = rows.filter(metric=metric, group_key=group)
    return qs.filter(customer=customer) if customer is not None else qs.filter(customer__isnull=True)


def metric_value(*, metric: Metric, customer: Customer | None, start: datetime | None, end: datetime,
                 granularity: str = "d") -> Value:  # fmt: skip
    """The metric's value over buckets of `granularity` from `start` (None: all time) to before `end`."""
    if metric.aggregation == "unique_count":
        if start is None:
            counter = _scope(MetricRollup.objects, metric=metric, customer=customer).filter(granularity="a")
            count: int | None = counter.values_list("count", flat=True).first()
            return count or 0
        seen = _scope(MetricUniqueValue.objects, metric=metric, customer=customer).filter(
            granularity=granularity, bucket__gte=start, bucket__lt=end
        )
        return seen.values("value_hash").distinct().count()
    qs = _scope(MetricRollup.objects, metric=metric, customer=customer).filter(granularity=granularity)
    if start is not None:
        qs = qs.filter(bucket__gte=start)
    qs = qs.filter(bucket__lt=end)
    return combine(metric.aggregation, qs.values(*_ROW_FIELDS))


# --- Reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    metric: Metric
    period: str
    start: datetime
    end: datetime
    points: list[tuple[datetime, Value]]
    groups: list[tuple[str, list[Value]]]  # (label, value per point) when the metric has a group-by

    def as_json(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = [{"date": _iso(b), "value": as_number(v)} for b, v in self.points]
        out: dict[str, Any] = {
            "metricId": str(self.metric.public_id),
            "name": self.metric.name,
            "aggregation": self.metric.aggregation,
            "startDate": _iso(self.start),
            "endDate": _iso(self.end),
            "period": self.period,
            "data": data,
        }
        if self.groups:
            out["groupBy"] = self.metric.group_by
            for i, item in enumerate(data):
                item["groups"] = {label: as_number(values[i]) for label, values in self.groups}
        return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_range(period: str, *, start: date | None = None, end: date | None = None,
                 now: datetime | None = None) -> tuple[datetime, datetime]:  # fmt: skip
    """The report's first and last period starts: Mantle's spans, or the given dates."""
    if period not in PERIODS:
        raise HubError(f"period must be one of {', '.join(PERIODS)}.")
    now = now or timezone.now()
    try:
        last = period_start(period, date_start(end) if end else now)
        if start:
            first = period_start(period, date_start(start))
        else:
            first = period_back(period, last, DEFAULT_SPAN[period] - 1)
        # The report ends where its last period does: that end must exist in the calendar too.
        period_next(period, last)
    except (OverflowError, ValueError):
        raise HubError(
            f"The {period} periods of this range go past the calendar's years 1 to 9999; narrow it."
        ) from None
    if first > last:
        raise HubError("startDate must not be after endDate.")
    return first, last


def metric_report(*, metric: Metric, period: str, customer: Customer | None = None,
                  start: date | None = None, end: date | None = None,
                  now: datetime | None = None) -> Report:  # fmt: skip
    """The metric's value per period, app-wide or for one customer (and per group, if grouped).

    One query: day rows (or, for unique counts, the period's distinct-value counters) of the total
    and of every group; the 20 most active groups are shown, in the order of their keys.
    """
    first, last = report_range(period, start=start, end=end, now=now)
    buckets = period_buckets(period, first, last)
    stop = period_next(period, buckets[-1])
    unique = metric.aggregation == "unique_count"
    gran = UNIQUE_GRANULARITY[period] if unique else "d"
    qs = MetricRollup.objects.filter(metric=metric, granularity=gran, bucket__gte=first, bucket__lt=stop)
    qs = qs.filter(customer=customer) if customer is not None else qs.filter(customer__isnull=True)
    if not metric.group_by:
        qs = qs.filter(group_key="")
    rows: dict[str, dict[datetime, list[dict]]] = defaultdict(lambda: defaultdict(list))
    activity: dict[str, int] = defaultdict(int)
    for r in qs.values("group_key", "bucket", *_ROW_FIELDS):
        rows[r["group_key"]][period_start(period, r["bucket"])].append(r)
        activity[r["group_key"]] += r["count"]
    # The most active groups, shown in the order of their keys (stable columns from day to day).
    ranked = sorted(sorted((k for k in rows if k != ""), key=lambda k: (-activity[k], k))[:GROUPS_SHOWN])
    aggregation = "count" if unique else metric.aggregation

    def series(key: str) -> list[Value]:
        per_bucket = rows.get(key, {})
        return [combine(aggregation, per_bucket.get(b, ())) for b in buckets]

    points = list(zip(buckets, series(""), strict=True))
    groups = [(group_label(k), series(k)) for k in ranked] if metric.group_by else []
    return Report(metric, period, first, stop, points, groups)


# --- A customer's usage -----------------------------------------------------------------------

WINDOWS = (
    ("monthToDateValue", "month"),
    ("last24HoursValue", "24h"),
    ("last7DaysValue", 7),
    ("last30DaysValue", 30),
    ("last90DaysValue", 90),
    ("last365DaysValue", 365),
)


def customer_usage(*, customer: Customer, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Every metric of the customer's app for this customer, in `@heymantle/client`'s UsageMetric shape.

    Keyed by metric id. `currentValue` is the current billing period's value.
    """
    now = now or timezone.now()
    metrics = list(Metric.objects.filter(app_id=customer.app_id).order_by("name"))
    if not metrics:
        return {}
    period = billing_period(customer=customer, now=now)
    today = day_start(now)
    this_hour = hour_start(now)
    ranges: dict[str, tuple[datetime | None, str]] = {
        "currentValue": (period.start, "d"),
        "monthToDateValue": (month_start(now), "d"),
        "last24HoursValue": (this_hour - timedelta(hours=23), "h"),
        "last7DaysValue": (today - timedelta(days=6), "d"),
        "last30DaysValue": (today - timedelta(days=29), "d"),
        "last90DaysValue": (today - timedelta(days=89), "d"),
        "last365DaysValue": (today - timedelta(days=364), "d"),
        "allTimeValue": (None, "d"),
    }
    plain = [m for m in metrics if m.aggregation != "unique_count"]
    rows_by_metric: dict[int, list[dict]] = defaultdict(list)
    if plain:
        since_24h = ranges["last24HoursValue"][0]
        qs = MetricRollup.objects.filter(customer=customer, group_key="", metric__in=plain).filter(
            Q(granularity="d") | Q(granularity="h", bucket__gte=since_24h)
        )
        for r in qs.values("metric_id", "granularity", "bucket", *_ROW_FIELDS):
            rows_by_metric[r["metric_id"]].append(r)
    end = this_hour + timedelta(hours=1)
    unique = [m for m in metrics if m.aggregation == "unique_count"]
    unique_values = _unique_windows(metrics=unique, customer=customer, ranges=ranges, end=end)
    out = {}
    for m in metrics:
        entry: dict[str, Any] = {
            "id": str(m.public_id),
            "name": m.name,
            "eventName": m.event_name,
            "aggregation": m.aggregation,
            "periodStart": _iso(period.start),
            "periodEnd": _iso(period.end),
        }
        for key, (since, gran) in ranges.items():
            value: Value
            if m.aggregation == "unique_count":
                value = unique_values.get(m.pk, {}).get(key, 0)
            else:
                rows = [
                    r for r in rows_by_metric.get(m.pk, ())
                    if r["granularity"] == gran and (since is None or r["bucket"] >= since)
                ]  # fmt: skip
                value = combine(m.aggregation, rows)
            entry[key] = as_number(value)
        out[str(m.public_id)] = entry
    return out


Windows = dict[str, tuple[datetime | None, str]]


def _unique_windows(*, metrics: list[Metric], customer: Customer, ranges: Windows,
                    end: datetime) -> dict[int, dict[str, int]]:  # fmt: skip
    """Distinct values of each unique-count metric in each window, in one query (all time: counters)."""
    if not metrics:
        return {}
    windows = {k: (since, gran) for k, (since, gran) in ranges.items() if since is not None}
    oldest = {gran: min(since for since, g in windows.values() if g == gran) for _, gran in windows.values()}
    scope = Q()
    for gran, since in oldest.items():
        scope |= Q(granularity=gran, bucket__gte=since)
    qs = MetricUniqueValue.objects.filter(scope, customer=customer, group_key="", metric__in=metrics)
    qs = qs.filter(bucket__lt=end)
    counts = {
        key: Count("value_hash", distinct=True, filter=Q(granularity=gran, bucket__gte=since))
        for key, (since, gran) in windows.items()
    }
    out: dict[int, dict[str, int]] = {}
    for row in qs.values("metric_id").annotate(**counts).order_by():
        values: dict[str, Any] = dict(row)
        out[values.pop("metric_id")] = values
    all_time = MetricRollup.objects.filter(customer=customer, group_key="", metric__in=metrics)
    all_time = all_time.filter(granularity="a")
    for metric_pk, n in all_time.values_list("metric_id", "count"):
        out.setdefault(metric_pk, {})["allTimeValue"] = n
    return out


# --- Several metrics at once (the screens) ----------------------------------------------------


def _days_scope(
    model: type[_Bucket], *, metrics: list[Metric], customer: Customer | None, start: datetime, end: datetime
) -> QuerySet[_Bucket]:
    qs = model.objects.filter(
        metric__in=metrics, group_key="", granularity="d", bucket__gte=start, bucket__lt=end
    )
    return qs.filter(customer=customer) if customer is not None else qs.filter(customer__isnull=True)


def metrics_values(*, metrics: list[Metric], customer: Customer | None, start: datetime,
                   end: datetime) -> dict[int, Value]:  # fmt: skip
    """Each metric's value (by pk) over the whole UTC days from `start` to before `end`, in two queries."""
    plain = [m for m in metrics if m.aggregation != "unique_count"]
    unique = [m for m in metrics if m.aggregation == "unique_count"]
    rows: dict[int, list[dict]] = defaultdict(list)
    if plain:
        qs = _days_scope(MetricRollup, metrics=plain, customer=customer, start=start, end=end)
        for r in qs.values("metric_id", *_ROW_FIELDS):
            rows[r["metric_id"]].append(r)
    counts: dict[int, int] = {}
    if unique and start == month_start(start) and end <= period_next("monthly", start):
        # A month so far: its distinct-value counters (a month's values seen before `end`).
        qs = MetricRollup.objects.filter(metric__in=unique, group_key="", granularity="m", bucket=start)
        qs = qs.filter(customer=customer) if customer is not None else qs.filter(customer__isnull=True)
        counts = dict(qs.values_list("metric_id", "count"))
    elif unique:
        seen = _days_scope(MetricUniqueValue, metrics=unique, customer=customer, start=start, end=end)
        counts = {
            r["metric_id"]: r["n"]
            for r in seen.values("metric_id").annotate(n=Count("value_hash", distinct=True)).order_by()
        }
    return {
        m.pk: counts.get(m.pk, 0) if m.aggregation == "unique_count" else combine(m.aggregation, rows[m.pk])
        for m in metrics
    }


def metrics_daily_values(*, metrics: list[Metric], customer: Customer | None, start: datetime,
                         end: datetime) -> dict[int, list[tuple[datetime, Value]]]:  # fmt: skip
    """Each metric's value (by pk) per UTC day from `start` to before `end`, in two queries.

    The same numbers as `metric_report(period="daily")` without its group series.
    """
    days = period_buckets("daily", start, end - timedelta(microseconds=1))
    plain = [m for m in metrics if m.aggregation != "unique_count"]
    unique = [m for m in metrics if m.aggregation == "unique_count"]
    rows: dict[tuple[int, datetime], list[dict]] = defaultdict(list)
    if plain:
        qs = _days_scope(MetricRollup, metrics=plain, customer=customer, start=days[0], end=end)
        for r in qs.values("metric_id", "bucket", *_ROW_FIELDS):
            rows[(r["metric_id"], as_utc(r["bucket"]))].append(r)
    counts: dict[tuple[int, datetime], int] = {}
    if unique:
        qs = _days_scope(MetricRollup, metrics=unique, customer=customer, start=days[0], end=end)
        counts = {(m, as_utc(b)): n for m, b, n in qs.values_list("metric_id", "bucket", "count")}
    out: dict[int, list[tuple[datetime, Value]]] = {}
    for m in metrics:
        if m.aggregation == "unique_count":
            out[m.pk] = [(d, counts.get((m.pk, d), 0)) for d in days]
        else:
            out[m.pk] = [(d, combine(m.aggregation, rows.get((m.pk, d), ()))) for d in days]
    return out
