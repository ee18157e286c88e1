"""Every aggregation and filter, through the rollups, against brute-force SQL over the raw events.

Hypothesis generates events (numbers, decimals, strings that look like numbers, booleans, nulls,
missing properties; late timestamps; repeated event ids), a metric definition, and the moment the
metric is created (some events are counted by the metric's build, the rest by the drain). Every
value the product reads from its rollups must equal an independent SQL query over
events_usageevent using PostgreSQL's jsonb semantics.
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.metrics.definitions import (
    CompiledMetric,
    MetricDefinitionError,
    canonical,
    definition_validate,
    group_label,
)
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.selectors import customer_usage, metric_report, metric_value
from events.metrics.services import metric_create
from events.services import usage_events_ingest
from hub.models import Customer
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
CUSTOMERS = ["shop-a", "shop-b", "shop-c"]

numbers = st.one_of(
    st.integers(-5, 100),
    st.sampled_from([0.5, 2.25, -1.75, 1.0, 3.0, 100.125]),
)
unit_values = st.one_of(numbers, st.sampled_from(["7", True, False, None, "x"]))
plan_values = st.sampled_from(["pro", "basic", 1, 1.0, 2, None, True, "1"])


@st.composite
def event(draw):
    props = {}
    if draw(st.booleans()) or draw(st.booleans()):
        props["units"] = draw(unit_values)
    if draw(st.booleans()):
        props["plan"] = draw(plan_values)
    if draw(st.booleans()):
        props["nested"] = {"n": draw(numbers)}
    at = NOW - timedelta(
        days=draw(st.integers(0, 70)), hours=draw(st.integers(0, 23)), minutes=draw(st.integers(0, 59))
    )
    return {
        "eventName": draw(st.sampled_from(["job", "job", "other"])),
        "eventId": f"e{draw(st.integers(0, 40))}",  # repeats are duplicates: stored once
        "customerId": draw(st.sampled_from(CUSTOMERS)),
        "timestamp": at.isoformat(),
        "properties": props,
    }


filters = st.one_of(
    st.builds(lambda v: {"property": "plan", "op": "eq", "value": v}, plan_values),
    st.builds(lambda v: {"property": "plan", "op": "neq", "value": v}, plan_values),
    st.builds(
        lambda v: {"property": "plan", "op": "in", "value": v}, st.lists(plan_values, min_size=1, max_size=3)
    ),
    st.builds(
        lambda v: {"property": "plan", "op": "not_in", "value": v},
        st.lists(plan_values, min_size=1, max_size=3),
    ),
    st.builds(lambda p: {"property": p, "op": "exists"}, st.sampled_from(["units", "plan", "nested.n"])),
    st.builds(lambda p: {"property": p, "op": "not_exists"}, st.sampled_from(["units", "plan"])),
    st.builds(
        lambda op, v: {"property": "units", "op": op, "value": v},
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        numbers,
    ),
    st.builds(
        lambda op, v: {"property": "nested.n", "op": op, "value": v}, st.sampled_from(["gt", "lte"]), numbers
    ),
)


@st.composite
def metric_spec(draw):
    aggregation = draw(st.sampled_from(["count", "sum", "min", "max", "average", "unique_count", "latest"]))
    prop = ""
    if aggregation == "unique_count":
        prop = draw(st.sampled_from(["plan", "units"]))
    elif aggregation != "count":
        prop = draw(st.sampled_from(["units", "units", "nested.n"]))
    return {
        "name": "m",
        "event_name": "job",
        "aggregation": aggregation,
        "property": prop,
        "group_by": draw(st.sampled_from(["", "", "plan"])),
        "filters": draw(st.lists(filters, max_size=2)),
    }


# --- The oracle: SQL over the raw events ------------------------------------------------------


def _path(prop: str) -> str:
    return "{" + ",".join(prop.split(".")) + "}"


def _filter_sql(f: dict) -> tuple[str, list]:
    p = f"e.properties #> '{_path(f['property'])}'"
    num = f"CASE WHEN jsonb_typeof({p}) = 'number' THEN ({p} #>> '{{}}')::numeric END"
    op = f["op"]
    if op == "eq":
        return f"{p} = %s::jsonb", [json.dumps(f["value"])]
    if op == "neq":
        return f"{p} IS DISTINCT FROM %s::jsonb", [json.dumps(f["value"])]
    if op == "in":
        return f"COALESCE({p} = ANY(%s::jsonb[]), false)", [[json.dumps(v) for v in f["value"]]]
    if op == "not_in":
        return f"NOT COALESCE({p} = ANY(%s::jsonb[]), false)", [[json.dumps(v) for v in f["value"]]]
    if op == "exists":
        return f"COALESCE(jsonb_typeof({p}) <> 'null', false)", []
    if op == "not_exists":
        return f"NOT COALESCE(jsonb_typeof({p}) <> 'null', false)", []
    sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return f"COALESCE({num} {sym} %s::numeric, false)", [str(f["value"])]


def oracle(app, spec, *, start=None, end=None, customer=None, by_group=False, per=None):
    """The metric's value by plain SQL over events_usageevent.

    With `by_group`, {group label: value}; with `per` ("day", "week" or "month"), {period start:
    value} (or {(period start, group label): value} with both).
    """
    where, params = ["e.app_id = %s", "e.event_name = %s"], [app.pk, spec["event_name"]]
    for f in spec["filters"]:
        sql, p = _filter_sql(f)
        where.append(sql)
        params += p
    if start is not None:
        where.append("e.timestamp >= %s")
        params.append(start)
    if end is not None:
        where.append("e.timestamp < %s")
        params.append(end)
    if customer is not None:
        where.append("e.customer_id = %s")
        params.append(customer.pk)
    prop = spec["property"]
    v = (
        f"CASE WHEN jsonb_typeof(e.properties #> '{_path(prop)}') = 'number' "
        f"THEN (e.properties #>> '{_path(prop)}')::numeric END"
        if prop
        else "NULL"
    )
    agg = {
        "count": "count(*)",
        "sum": f"COALESCE(sum({v}), 0)",
        "min": f"min({v})",
        "max": f"max({v})",
        "average": f"avg({v})",
        "latest": f"(array_agg({v} ORDER BY e.timestamp DESC, e.id DESC) FILTER (WHERE {v} IS NOT NULL))[1]",
        "unique_count": f"count(DISTINCT e.properties #> '{_path(prop)}') "
        f"FILTER (WHERE jsonb_typeof(e.properties #> '{_path(prop)}') <> 'null')",
    }[spec["aggregation"]]
    group = (
        f"COALESCE(e.properties #> '{_path(spec['group_by'])}', 'null'::jsonb)::text" if by_group else "''"
    )
    period = f"date_trunc('{per}', e.timestamp, 'UTC')" if per else "NULL::timestamptz"
    sql = (
        f"SELECT {period}, {group}, {agg} FROM events_usageevent e WHERE {' AND '.join(where)} GROUP BY 1, 2"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    empty = 0 if spec["aggregation"] in ("count", "sum", "unique_count") else None
    if not by_group and not per:
        return rows[0][2] if rows else empty
    out = {}
    for at, g, val in rows:
        label = group_label(canonical(json.loads(g, parse_float=Decimal))) if by_group else None
        key = (at, label) if by_group and per else (at if per else label)
        out[key] = val
    return out


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = Decimal(a), Decimal(b)
    return abs(a - b) <= Decimal("1e-9") * max(1, abs(b))


# --- The property ----------------------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(event(), min_size=1, max_size=30),
    spec=metric_spec(),
    split=st.integers(0, 30),
    late=st.lists(event(), max_size=5),
)
def test_rollups_equal_brute_force_sql(events, spec, split, late):
    app = AppFactory()
    before, after = events[:split], events[split:]
    if before:
        usage_events_ingest(app=app, raw_events=before)
        rollups_drain(app_pks=[app.pk])  # counted before the metric exists
    if after:
        usage_events_ingest(app=app, raw_events=after)  # pending while the metric is built
    metric = metric_create(app=app, definition=definition_validate(**spec))
    metrics_rebuild(app_pk=app.pk)
    if late:
        usage_events_ingest(app=app, raw_events=late)  # late and duplicate events after the build
    rollups_drain(app_pks=[app.pk])
    metric.refresh_from_db()
    end = NOW + timedelta(days=1)

    # All time, app-wide and per customer.
    assert same(metric_value(metric=metric, customer=None, start=None, end=end), oracle(app, spec))
    customers = list(Customer.objects.filter(app=app))
    for c in customers:
        assert same(
            metric_value(metric=metric, customer=c, start=None, end=end), oracle(app, spec, customer=c)
        )

    # Every daily, weekly and monthly bucket of the reports.
    empty = 0 if spec["aggregation"] in ("count", "sum", "unique_count") else None
    for period, per in (("daily", "day"), ("weekly", "week"), ("monthly", "month")):
        report = metric_report(metric=metric, period=period, now=NOW)
        first, stop = report.points[0][0], report.end
        expected = oracle(app, spec, start=first, end=stop, per=per)
        for bucket, value in report.points:
            assert same(value, expected.get(bucket, empty)), (period, bucket, value, expected.get(bucket))
        assert set(expected) <= {b for b, _ in report.points}
        if spec["group_by"]:
            labels = {label for label, _ in report.groups}
            by_group = oracle(app, spec, start=first, end=stop, by_group=True, per=per)
            assert {g for (_, g), v in by_group.items() if not same(v, empty)} <= labels, (by_group, labels)
            for label, values in report.groups:
                for (bucket, _), value in zip(report.points, values, strict=True):
                    assert same(value, by_group.get((bucket, label), empty)), (period, label, bucket, value)

    # A customer's daily report and usage windows.
    c = customers[0]
    report = metric_report(metric=metric, period="daily", customer=c, now=NOW)
    expected = oracle(app, spec, start=report.points[0][0], end=report.end, customer=c, per="day")
    for bucket, value in report.points:
        assert same(value, expected.get(bucket, empty)), (bucket, value, expected.get(bucket))
    usage = customer_usage(customer=c, now=NOW)[str(metric.public_id)]
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    windows = {
        "last24HoursValue": hour - timedelta(hours=23),
        "last7DaysValue": today - timedelta(days=6),
        "last30DaysValue": today - timedelta(days=29),
        "monthToDateValue": today.replace(day=1),
    }
    for key, start in windows.items():
        expected = oracle(app, spec, start=start, end=hour + timedelta(hours=1), customer=c)
        assert same(usage[key], expected), (key, usage[key], expected)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    properties=st.dictionaries(st.sampled_from(["a", "b", "units", "x.y"]), json_values, max_size=4),
    raw_filters=st.lists(
        st.fixed_dictionaries(
            {"property": st.text(max_size=6), "op": st.text(max_size=8), "value": json_values}
        ),
        max_size=3,
    ),
    aggregation=st.text(max_size=12),
    prop=st.one_of(st.none(), st.text(max_size=6)),
)
def test_definitions_and_evaluation_raise_nothing_but_their_own_error(
    properties, raw_filters, aggregation, prop
):
    try:
        definition = definition_validate(
            name="m",
            event_name="e",
            aggregation=aggregation,
            property=prop,
            group_by=prop,
            filters=raw_filters,
        )
    except MetricDefinitionError:
        return
    compiled = CompiledMetric(
        pk=1,
        event_name="e",
        aggregation=definition.aggregation,
        property=definition.property,
        group_by=definition.group_by,
        filters=definition.filters,
    )
    compiled.evaluate(properties)
