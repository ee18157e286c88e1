"""Usage metrics: definitions, rollups kept up to date, windows, reports and the customer usage object."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from events.metrics.definitions import MetricDefinitionError, definition_validate
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.selectors import customer_usage, metric_report, metric_value
from events.metrics.services import metric_create, metric_update
from events.models import Metric, MetricRollup, RollupBatch
from events.services import usage_events_ingest
from hub.services.customers import customer_identify

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def ingest(app, *events):
    return usage_events_ingest(app=app, raw_events=list(events))


def ev(name, customer, at, eid=None, **props):
    body = {"eventName": name, "customerId": customer, "timestamp": at.isoformat(), "properties": props}
    if eid:
        body["eventId"] = eid
    return body


def make_metric(app, **kw):
    kw.setdefault("name", "m")
    kw.setdefault("event_name", "api_call")
    metric = metric_create(app=app, definition=definition_validate(**kw))
    metrics_rebuild(app_pk=app.pk)
    rollups_drain(app_pks=[app.pk])  # what the worker does next: count the batches still pending
    metric.refresh_from_db()
    return metric


def test_a_new_metric_is_built_from_events_stored_before_it(app):
    ingest(app, *[ev("api_call", "shop-1", NOW - timedelta(days=d)) for d in range(5)])
    rollups_drain(app_pks=[app.pk])  # counted into no metric: there is none yet
    assert not RollupBatch.objects.exists()
    metric = make_metric(app)
    assert metric.status == Metric.Status.READY
    assert metric_value(metric=metric, customer=None, start=None, end=NOW + timedelta(days=1)) == 5


def test_events_after_the_metric_are_counted_once_by_the_drain(app):
    metric = make_metric(app)
    ingest(app, ev("api_call", "shop-1", NOW, eid="a"), ev("api_call", "shop-1", NOW, eid="b"))
    ingest(app, ev("api_call", "shop-1", NOW, eid="a"))  # a duplicate: no batch, nothing counted
    assert RollupBatch.objects.filter(app=app).count() == 1
    assert rollups_drain(app_pks=[app.pk]) == 2
    assert rollups_drain(app_pks=[app.pk]) == 0
    assert metric_value(metric=metric, customer=None, start=None, end=NOW + timedelta(days=1)) == 2


def test_pending_events_are_not_counted_twice_when_a_metric_is_built(app):
    ingest(app, ev("api_call", "shop-1", NOW, eid="old"))
    rollups_drain(app_pks=[app.pk])
    ingest(app, ev("api_call", "shop-1", NOW, eid="pending"))  # stored, batch not drained yet
    metric = make_metric(app)
    rollups_drain(app_pks=[app.pk])
    assert metric_value(metric=metric, customer=None, start=None, end=NOW + timedelta(days=1)) == 2


def test_filters_and_aggregations(app):
    ingest(
        app,
        ev("job", "shop-1", NOW, units=5, plan="pro"),
        ev("job", "shop-1", NOW + timedelta(minutes=1), units=2.5, plan="basic"),
        ev("job", "shop-2", NOW, units="7", plan="pro"),  # a string: no value
        ev("job", "shop-2", NOW - timedelta(hours=1), units=1, plan="pro"),
    )
    end = NOW + timedelta(days=1)

    def value(aggregation, prop="units", filters=None):
        m = make_metric(
            app,
            name=f"{aggregation}-{filters}",
            event_name="job",
            aggregation=aggregation,
            property=prop,
            filters=filters,
        )
        return metric_value(metric=m, customer=None, start=None, end=end)

    assert value("count", filters=[{"property": "plan", "op": "eq", "value": "pro"}]) == 3
    assert value("sum") == Decimal("8.5")
    assert value("min") == 1
    assert value("max") == 5
    assert value("average") == Decimal("8.5") / 3
    assert value("latest") == Decimal("2.5")  # the latest by timestamp, not by arrival
    assert value("unique_count", prop="plan") == 2
    assert value("count", filters=[{"property": "units", "op": "gte", "value": 2.5}]) == 2
    assert value("count", filters=[{"property": "plan", "op": "in", "value": ["basic", "x"]}]) == 1
    assert value("count", filters=[{"property": "missing", "op": "exists"}]) == 0


def test_invalid_definitions_name_the_field():
    with pytest.raises(MetricDefinitionError, match="property"):
        definition_validate(name="x", event_name="e", aggregation="sum")
    with pytest.raises(MetricDefinitionError, match=r"filters\[0\].op"):
        definition_validate(name="x", event_name="e", filters=[{"property": "a", "op": "like", "value": 1}])
    with pytest.raises(MetricDefinitionError, match=r"filters\[0\].value"):
        definition_validate(name="x", event_name="e", filters=[{"property": "a", "op": "gt", "value": "1"}])


def test_a_changed_definition_is_rebuilt(app):
    ingest(app, ev("a", "shop-1", NOW), ev("b", "shop-1", NOW), ev("b", "shop-1", NOW))
    metric = make_metric(app, event_name="a")
    metric = metric_update(metric=metric, definition=definition_validate(name="m", event_name="b"))
    assert metric.status == Metric.Status.BUILDING and metric.version == 2
    metrics_rebuild(app_pk=app.pk)
    metric.refresh_from_db()
    assert metric.status == Metric.Status.READY
    assert metric_value(metric=metric, customer=None, start=None, end=NOW + timedelta(days=1)) == 2


def test_late_events_count_in_their_own_period(app):
    metric = make_metric(app)
    ingest(app, ev("api_call", "shop-1", NOW), ev("api_call", "shop-1", datetime(2026, 9, 3, tzinfo=UTC)))
    rollups_drain(app_pks=[app.pk])
    report = metric_report(metric=metric, period="monthly", now=NOW)
    values = {p[0].strftime("%Y-%m"): p[1] for p in report.points}
    assert values["2026-09"] == 1 and values["2026-10"] == 0 and values["2026-11"] == 1
    assert len(report.points) == 12


def test_grouped_report(app):
    metric = make_metric(app, group_by="plan")
    ingest(
        app,
        ev("api_call", "s", NOW, plan="pro"),
        ev("api_call", "s", NOW, plan="pro"),
        ev("api_call", "s", NOW, plan="basic"),
        ev("api_call", "s", NOW),
    )
    rollups_drain(app_pks=[app.pk])
    body = metric_report(metric=metric, period="daily", now=NOW).as_json()
    assert body["data"][-1] == {
        "date": "2026-11-23T00:00:00.000Z",
        "value": 4,
        "groups": {"pro": 2, "basic": 1, "(none)": 1},
    }
    assert len(body["data"]) == 90


def test_customer_usage_windows(app):
    customer_identify(app=app, platform_id="shop-1")
    metric = make_metric(app)
    at = [
        NOW,
        NOW - timedelta(hours=30),
        NOW - timedelta(days=10),
        NOW - timedelta(days=100),
        NOW - timedelta(days=400),
    ]
    ingest(app, *[ev("api_call", "shop-1", t) for t in at])
    rollups_drain(app_pks=[app.pk])
    from hub.models import Customer

    usage = customer_usage(customer=Customer.objects.get(app=app, platform_id="shop-1"), now=NOW)
    u = usage[str(metric.public_id)]
    assert (
        u["last24HoursValue"],
        u["last7DaysValue"],
        u["last30DaysValue"],
        u["last90DaysValue"],
        u["last365DaysValue"],
        u["allTimeValue"],
        u["monthToDateValue"],
        u["currentValue"],
    ) == (1, 2, 3, 3, 4, 5, 3, 3)


def test_rollup_rows_are_per_hour_and_day_for_customer_and_app(app):
    make_metric(app)
    ingest(app, ev("api_call", "shop-1", NOW))
    rollups_drain(app_pks=[app.pk])
    assert sorted((r.customer_id is None, r.granularity) for r in MetricRollup.objects.all()) == [
        (False, "d"),
        (False, "h"),
        (True, "d"),
        (True, "h"),
    ]
