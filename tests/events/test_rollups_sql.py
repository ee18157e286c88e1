"""A metric built by set-based SQL has exactly the rows the Python evaluation gives; hour rows age out.

The build of a metric over stored events runs in PostgreSQL (events/metrics/metric_sql.py); the drain
of new events evaluates them in Python (events/metrics/definitions.py). Both must give the same rows for every
kind of JSON value: numbers written many ways, strings with quotes, control characters, non-ASCII
and more than 255 characters, booleans, nulls, objects and arrays (left to Python by the SQL
build), array indexes in paths.
"""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.metrics import metric_sql, rollups
from events.metrics.definitions import definition_validate
from events.metrics.rollup_store import PostgresRollupStore
from events.metrics.rollups import metrics_rebuild, rollups_drain, rollups_hours_prune
from events.metrics.selectors import customer_usage, metric_report
from events.metrics.services import metric_create
from events.models import Metric, MetricRollup, MetricUniqueValue
from events.services import usage_events_ingest
from hub.models import Customer
from hub.services.customers import customer_identify
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # what the events API stores (orjson: 64-bit)
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**6), max_value=10**6),
    st.sampled_from([0, 1, 1.0, 1.50, 100, 1e2, 2.5e-7, -0.0, 1e20, "1", "true", "null", "", "(none)"]),
    st.sampled_from([1.0, 2.50, 100.0, 0.0]),  # JSON numbers whose text is not canonical
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8),
    st.text(alphabet='ab"\\/\n\t\x01\x7fé€😀', min_size=250, max_size=262),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["k", "a"]), scalars, max_size=2),
)


def _json(value):
    # Decimals from hypothesis as JSON numbers (the events API takes JSON).
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


@st.composite
def event(draw):
    props = {}
    for key in ("v", "g"):
        if draw(st.integers(0, 4)):
            props[key] = _json(draw(values))
    if draw(st.booleans()):
        props["items"] = [_json(draw(scalars)), _json(draw(scalars))]
    at = NOW - timedelta(days=draw(st.integers(0, 40)), hours=draw(st.integers(0, 23)))
    return {
        "eventName": "job",
        "eventId": f"e{draw(st.integers(0, 60))}",
        "customerId": draw(st.sampled_from(["shop-a", "shop-b"])),
        "timestamp": at.isoformat(),
        "properties": props,
    }


@st.composite
def spec(draw):
    aggregation = draw(st.sampled_from(["count", "sum", "min", "max", "average", "unique_count", "latest"]))
    prop = "" if aggregation == "count" else draw(st.sampled_from(["v", "v", "items.1", "g"]))
    filters = draw(
        st.lists(
            st.one_of(
                st.builds(
                    lambda op, v: {"property": "g", "op": op, "value": _json(v)},
                    st.sampled_from(["eq", "neq"]),
                    values,
                ),
                st.builds(
                    lambda op, v: {"property": "g", "op": op, "value": [_json(x) for x in v]},
                    st.sampled_from(["in", "not_in"]),
                    st.lists(values, min_size=1, max_size=3),
                ),
                st.builds(
                    lambda op, p: {"property": p, "op": op},
                    st.sampled_from(["exists", "not_exists"]),
                    st.sampled_from(["v", "items.0"]),
                ),
                st.builds(
                    lambda op, v: {"property": "v", "op": op, "value": v},
                    st.sampled_from(["gt", "gte", "lt", "lte"]),
                    st.integers(-5, 5),
                ),
            ),
            max_size=2,
        )
    )
    group = draw(st.sampled_from(["", "g", "items.0"]))
    return {"name": "m", "event_name": "job", "aggregation": aggregation, "property": prop,
            "group_by": group, "filters": filters}  # fmt: skip


_LATEST = ("latest_value", "latest_at", "latest_event_id")


def _rows(metric):
    fields = [
        "customer_id",
        "group_key",
        "granularity",
        "bucket",
        "count",
        "value_count",
        "sum",
        "min",
        "max",
    ]
    if metric.aggregation == "latest":
        fields += _LATEST
    rollup = sorted(MetricRollup.objects.filter(metric=metric).values_list(*fields), key=repr)
    unique = sorted(
        MetricUniqueValue.objects.filter(metric=metric).values_list(
            "customer_id", "group_key", "granularity", "bucket", "value_hash"
        ),
        key=repr,
    )
    return rollup, unique


def _rebuild(metric, *, python: bool):
    Metric.objects.filter(pk=metric.pk).update(status=Metric.Status.BUILDING)
    if python:
        with mock.patch.object(PostgresRollupStore, "metric_plan", return_value=None):
            assert metrics_rebuild(app_pk=metric.app_id) == [metric.pk]
    else:
        assert metrics_rebuild(app_pk=metric.app_id) == [metric.pk]
    return _rows(metric)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event(), min_size=1, max_size=25), definition=spec(), split=st.floats(0, 1))
def test_sql_build_and_drain_give_the_rows_of_the_python_evaluation(events, definition, split):
    """Events before the metric are counted by its SQL build, the others by SQL drains."""
    app = AppFactory()
    k = int(len(events) * split)
    before, after = events[:k], events[k:]
    if before:
        usage_events_ingest(app=app, raw_events=before)
        rollups_drain(app_pks=[app.pk])
    metric = metric_create(app=app, definition=definition_validate(**definition))
    assert metric_sql.metric_sql(metric, app_pk=app.pk) is not None, "this definition is meant for SQL"
    assert metrics_rebuild(app_pk=app.pk) == [metric.pk]
    if after:
        usage_events_ingest(app=app, raw_events=after)
        rollups_drain(app_pks=[app.pk])
    by_sql_build_and_drain = _rows(metric)

    by_python = _rebuild(metric, python=True)
    by_sql_build = _rebuild(metric, python=False)

    assert by_sql_build_and_drain == by_python
    assert by_sql_build == by_python


def test_the_drain_evaluates_in_python_only_what_sql_cannot_mirror():
    app = AppFactory()
    metric = metric_create(app=app, definition=definition_validate(
        name="plans", event_name="job", aggregation="unique_count", property="plan"))  # fmt: skip
    metrics_rebuild(app_pk=app.pk)
    usage_events_ingest(app=app, raw_events=[
        {"eventName": "job", "eventId": str(i), "customerId": "shop", "timestamp": NOW.isoformat(),
         "properties": {"plan": plan}}
        for i, plan in enumerate(["pro", {"tier": "pro"}, ["a"], "pro", 1, 1.0])
    ])  # fmt: skip
    evaluated = []
    real = rollups.delta_of

    def spy(metrics, events, **kwargs):
        events = list(events)
        evaluated.extend(events)
        return real(metrics, events, **kwargs)

    with mock.patch.object(rollups, "delta_of", spy):
        rollups_drain(app_pks=[app.pk])
    assert sorted(e[4] for e in evaluated) == ['{"plan": ["a"]}', '{"plan": {"tier": "pro"}}']
    usage = customer_usage(customer=Customer.objects.get(app=app), now=NOW)[str(metric.public_id)]
    assert usage["allTimeValue"] == 4  # "pro", {"tier": "pro"}, ["a"], 1 (= 1.0)


@pytest.mark.parametrize("path", ["items.-1", "items. 1", "items.+1", "items.²"])
def test_paths_postgresql_reads_differently_are_left_to_python(path):
    app = AppFactory()
    usage_events_ingest(app=app, raw_events=[
        {"eventName": "job", "eventId": "1", "customerId": "shop", "timestamp": NOW.isoformat(),
         "properties": {"items": [1, 2]}}])  # fmt: skip
    rollups_drain(app_pks=[app.pk])
    metric = metric_create(app=app, definition=definition_validate(
        name="m", event_name="job", aggregation="sum", property=path))  # fmt: skip
    assert metric_sql.metric_sql(metric, app_pk=app.pk) is None
    assert metrics_rebuild(app_pk=app.pk) == [metric.pk]  # built by Python: nothing summed
    assert (
        MetricRollup.objects.filter(metric=metric, customer__isnull=True, granularity="d").get().sum is None
    )


def _unique_app(app):
    return metric_create(app=app, definition=definition_validate(
        name="users", event_name="job", aggregation="unique_count", property="user"))  # fmt: skip


def _ev(eid, customer, user, at):
    return {"eventName": "job", "eventId": eid, "customerId": customer, "timestamp": at.isoformat(),
            "properties": {"user": user}}  # fmt: skip


def test_unique_counts_read_their_period_counters():
    """Distinct values per day, week and month are counters kept as values are first seen."""
    app = AppFactory()
    metric = _unique_app(app)
    metrics_rebuild(app_pk=app.pk)
    monday = datetime(2026, 11, 16, 12, tzinfo=UTC)
    usage_events_ingest(app=app, raw_events=[
        _ev("1", "shop", "ann", monday), _ev("2", "shop", "bob", monday),
        _ev("3", "shop", "ann", monday + timedelta(days=1)),  # same week, new day
        _ev("4", "other", "ann", monday + timedelta(days=7)),  # next week, other customer
    ])  # fmt: skip
    rollups_drain(app_pks=[app.pk])
    counters = {
        (c, g, b.date().isoformat()): n
        for c, g, b, n in MetricRollup.objects.filter(metric=metric, customer__isnull=True).values_list(
            "customer_id", "granularity", "bucket", "count"
        )
    }
    assert counters == {
        (None, "d", "2026-11-16"): 2, (None, "d", "2026-11-17"): 1, (None, "d", "2026-11-23"): 1,
        (None, "w", "2026-11-16"): 2, (None, "w", "2026-11-23"): 1,
        (None, "m", "2026-11-01"): 2, (None, "a", "1970-01-01"): 2,
    }  # fmt: skip
    weekly = metric_report(metric=metric, period="weekly", now=NOW)
    assert [v for _, v in weekly.points][-2:] == [2, 1]
    assert metric_report(metric=metric, period="monthly", now=NOW).points[-1][1] == 2


def test_merging_customers_counts_their_distinct_values_again():
    """Placeholders by domain and by id merged by identify: their distinct values are not added."""
    app = AppFactory()
    metric = _unique_app(app)
    metrics_rebuild(app_pk=app.pk)
    usage_events_ingest(app=app, raw_events=[
        _ev("1", "555", "ann", NOW), _ev("2", "acme.myshopify.com", "ann", NOW),
        _ev("3", "acme.myshopify.com", "bob", NOW),
    ])  # fmt: skip
    rollups_drain(app_pks=[app.pk])
    result = customer_identify(app=app, platform_id="555", myshopify_domain="acme.myshopify.com", name="Acme")
    assert Customer.objects.filter(app=app).count() == 1
    usage = customer_usage(customer=result.customer, now=NOW)[str(metric.public_id)]
    assert usage["allTimeValue"] == 2  # ann and bob, not 1 + 2
    assert usage["monthToDateValue"] == 2
    assert MetricRollup.objects.get(metric=metric, customer=result.customer, granularity="m").count == 2


def test_hour_rows_are_written_and_kept_for_the_recent_hours_only(settings):
    settings.HUB_METRICS_HOUR_ROWS_HOURS = 48
    now = datetime.now(UTC)
    app = AppFactory()
    metric = metric_create(app=app, definition=definition_validate(name="calls", event_name="job"))
    users = _unique_app(app)
    metrics_rebuild(app_pk=app.pk)
    usage_events_ingest(app=app, raw_events=[
        _ev("recent", "shop", "ann", now - timedelta(hours=2)),
        _ev("old", "shop", "bob", now - timedelta(days=5)),
    ])  # fmt: skip
    rollups_drain(app_pks=[app.pk])
    hours = MetricRollup.objects.filter(metric=metric, granularity="h")
    assert hours.count() == 2  # customer and app-wide, for the recent event only
    assert MetricRollup.objects.filter(metric=metric, granularity="d").count() == 4
    assert MetricUniqueValue.objects.filter(metric=users, granularity="h").count() == 2

    # Built from the stored events: the same rows.
    Metric.objects.filter(pk__in=[metric.pk, users.pk]).update(status=Metric.Status.BUILDING)
    metrics_rebuild(app_pk=app.pk)
    assert hours.count() == 2
    assert MetricUniqueValue.objects.filter(metric=users, granularity="h").count() == 2

    # Two days later the recent hour is old: the sweep's prune deletes it, days stay.
    assert rollups_hours_prune(now=now + timedelta(days=2, hours=1)) == 4
    assert hours.count() == 0
    assert MetricRollup.objects.filter(metric=metric, granularity="d").count() == 4


def test_the_sql_build_leaves_no_temporary_table():
    app = AppFactory()
    _unique_app(app)
    usage_events_ingest(app=app, raw_events=[_ev("1", "shop", "ann", NOW)])
    metrics_rebuild(app_pk=app.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = '_rebuild_days'")
        assert cursor.fetchone()[0] == 0


def test_a_drain_without_sql_plans_builds_no_sql(monkeypatch):
    """On SQLite (`make run`) no metric has a SQL plan: the drain must not build PostgreSQL SQL."""
    app = AppFactory()
    metric = _unique_app(app)
    metrics_rebuild(app_pk=app.pk)

    def refuse(value):
        raise AssertionError("SQL was built for a drain that has no SQL plan")

    monkeypatch.setattr(PostgresRollupStore, "metric_plan", lambda self, metric, app_pk: None)
    monkeypatch.setattr(metric_sql, "literal", refuse)
    usage_events_ingest(app=app, raw_events=[_ev("1", "shop", "ann", NOW)])
    rollups_drain(app_pks=[app.pk])
    assert MetricRollup.objects.get(metric=metric, customer__isnull=True, granularity="a").count == 1
