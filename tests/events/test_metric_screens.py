"""Usage metrics → Metrics screens: list, form, chart and table, plan limits; the Customer view's usage."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from events.metrics.definitions import definition_validate
from events.metrics.periods import day_start
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.selectors import metric_report, metric_value, metrics_values
from events.metrics.services import metric_create
from events.models import Metric, PlanUsageLimit
from events.services import usage_events_ingest
from hub.services.customer_refs import customer_get
from tests.factories import AppFactory, MembershipFactory, PlanFactory, UserFactory

pytestmark = pytest.mark.django_db


def ingest(app, *events):
    usage_events_ingest(app=app, raw_events=list(events))


def ev(customer, at, name="api_call", **props):
    return {"eventName": name, "customerId": customer, "timestamp": at.isoformat(), "properties": props}


def build(app):
    """What the worker does after a metric is created or events arrive."""
    metrics_rebuild(app_pk=app.pk)
    rollups_drain(app_pks=[app.pk])


def make_metric(app, **kw):
    kw.setdefault("name", "API calls")
    kw.setdefault("event_name", "api_call")
    metric = metric_create(app=app, definition=definition_validate(**kw))
    build(app)
    metric.refresh_from_db()
    return metric


def url(app, *parts):
    return "/".join([f"/apps/{app.public_id}/metrics", *map(str, parts)]) + "/"


def field_error(html, name):
    """The error paragraph right after the input named `name` (None when there is none)."""
    match = re.search(rf'name="{name}"[^>]*>\s*(?:<[^p][^>]*>[^<]*</[^>]*>\s*|<span[^>]*>[^<]*</span>\s*)*'
                      r'<p class="field-error"[^>]*>([^<]+)</p>', html)  # fmt: skip
    return match.group(1) if match else None


def post_form(client, app, path, **fields):
    data = {"name": "", "event_name": "", "aggregation": "count", "property": "", "group_by": "",
            "filter_property": [], "filter_op": [], "filter_value": []}  # fmt: skip
    data.update(fields)
    return client.post(path, data)


# --- List ---------------------------------------------------------------------------------------


def test_list_shows_each_metric_with_status_and_this_month_value(logged_in, app):
    now = timezone.now()
    ingest(app, *[ev("shop-1", day_start(now) + timedelta(minutes=i), units=i) for i in range(4)])
    ready = make_metric(app, name="Units", aggregation="sum", property="units")
    building = metric_create(app=app, definition=definition_validate(name="Calls", event_name="api_call"))

    html = logged_in.get(url(app)).content.decode()

    assert "Units" in html and "Calls" in html and "Sum of a property" in html
    ready_row = re.search(rf'data-metric-id="{ready.public_id}".*?</tr>', html, re.S).group(0)
    assert 'data-status="ready"' in ready_row
    assert re.search(r"data-value>6<", ready_row)  # 0 + 1 + 2 + 3 this month
    building_row = re.search(rf'data-metric-id="{building.public_id}".*?</tr>', html, re.S).group(0)
    assert "Computing…" in building_row
    assert '<meta http-equiv="refresh"' in html  # refreshes itself while a metric is computing

    build(app)
    html = logged_in.get(url(app)).content.decode()
    assert "Computing…" not in html and '<meta http-equiv="refresh"' not in html
    assert url(app, "new") in html  # "New metric"


def test_list_values_take_two_queries_whatever_the_number_of_metrics(
    logged_in, app, django_assert_max_num_queries
):
    for i in range(6):
        metric_create(app=app, definition=definition_validate(
            name=f"m{i}", event_name="api_call", aggregation="unique_count" if i % 2 else "count",
            property="user" if i % 2 else ""))  # fmt: skip
    logged_in.get(url(app))  # warm the session and the customer caches
    with django_assert_max_num_queries(7):  # session, user, app, nav workspaces, metrics, rollups, uniques
        assert logged_in.get(url(app)).status_code == 200


def test_list_values_are_the_metric_values_of_every_aggregation(app):
    today = day_start(timezone.now())
    ingest(app, *[
        ev(f"shop-{d % 2}", today - timedelta(days=d, hours=h), units=d * 3 + h, user=f"u{(d + h) % 4}")
        for d in (0, 1, 5, 40) for h in (0, 1, 2)
    ])  # fmt: skip
    metrics = [make_metric(app, name=a, aggregation=a, property="units" if a != "unique_count" else "user")
               for a in ("count", "sum", "min", "max", "average", "unique_count", "latest")]  # fmt: skip
    start, end = today - timedelta(days=6), today + timedelta(days=1)
    for customer in (None, customer_get(app=app, reference="shop-1")):
        values = metrics_values(metrics=metrics, customer=customer, start=start, end=end)
        for metric in metrics:
            expected = metric_value(metric=metric, customer=customer, start=start, end=end)
            assert values[metric.pk] == expected, (metric.aggregation, customer)
    assert values[metrics[5].pk] == 3  # shop-1: u1, u2, u3 on day 1 and again on day 5


# --- Form ---------------------------------------------------------------------------------------


def test_a_definition_error_is_shown_at_its_field_and_nothing_is_saved(logged_in, app):
    response = post_form(
        logged_in, app, url(app, "new"), name="Units", event_name="api_call", aggregation="sum"
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "is required" in field_error(html, "property")
    assert field_error(html, "name") is None and field_error(html, "event_name") is None
    assert 'value="Units"' in html  # what was typed stays
    assert not Metric.objects.exists()


def test_every_error_of_the_form_is_shown_at_once(logged_in, app):
    response = post_form(
        logged_in, app, url(app, "new"), name="", event_name="", aggregation="sum", group_by="a..b",
        filter_property=["units"], filter_op=["gt"], filter_value=["lots"],
    )  # fmt: skip

    assert response.status_code == 400
    html = response.content.decode()
    for field in ("name", "event_name", "property", "group_by"):
        assert field_error(html, field), field
    rows = re.findall(r"<tr data-filter-row>.*?</tr>", html, re.S)
    assert "must be a number" in rows[0]
    assert not Metric.objects.exists()


def test_a_filter_error_is_shown_on_its_row_and_nothing_is_saved(logged_in, app):
    response = post_form(
        logged_in, app, url(app, "new"), name="Big jobs", event_name="job",
        filter_property=["plan", "units"], filter_op=["eq", "gt"], filter_value=["pro", "lots"],
    )  # fmt: skip

    assert response.status_code == 400
    html = response.content.decode()
    rows = re.findall(r"<tr data-filter-row>.*?</tr>", html, re.S)
    assert len(rows) == 2 + 1  # the two rows typed, and the blank row of the "Add filter" template
    assert "field-error" not in rows[0]
    assert "must be a number" in rows[1] and 'value="lots"' in rows[1]
    assert not Metric.objects.exists()


def test_a_taken_name_is_shown_at_the_name_field(logged_in, app):
    make_metric(app, name="Calls")
    response = post_form(logged_in, app, url(app, "new"), name="Calls", event_name="api_call")
    assert response.status_code == 400
    assert "exists already" in field_error(response.content.decode(), "name")
    assert Metric.objects.count() == 1


def test_create_reads_filter_values_as_json_or_text_and_lists_comma_separated(logged_in, app):
    response = post_form(
        logged_in, app, url(app, "new"), name="Pro units", event_name="job", aggregation="sum",
        property="units", group_by="region",
        filter_property=["plan", "units", "tier", "beta", "", "code"],
        filter_op=["in", "gte", "eq", "exists", "eq", "not_in"],
        filter_value=["pro, basic", "5", '"5"', "", "", '[1, "a,b"]'],
    )  # fmt: skip

    metric = Metric.objects.get(app=app)
    assert response.status_code == 302
    assert response["Location"] == url(app, metric.public_id)
    assert (metric.name, metric.event_name, metric.aggregation, metric.property, metric.group_by) == (
        "Pro units", "job", "sum", "units", "region",
    )  # fmt: skip
    assert metric.status == Metric.Status.BUILDING
    assert metric.filters == [
        {"property": "plan", "op": "in", "value": ["pro", "basic"]},
        {"property": "units", "op": "gte", "value": 5},
        {"property": "tier", "op": "eq", "value": "5"},
        {"property": "beta", "op": "exists"},
        {"property": "code", "op": "not_in", "value": [1, "a,b"]},
    ]  # the blank row is skipped


def test_count_needs_no_property_and_ignores_one(logged_in, app):
    response = post_form(logged_in, app, url(app, "new"), name="Calls", event_name="api_call",
                         aggregation="count", property="units")  # fmt: skip
    assert response.status_code == 302
    assert Metric.objects.get(app=app).property == ""


def test_the_form_suggests_recent_event_names(logged_in, app):
    ingest(app, ev("shop-1", timezone.now(), name="export_done"))
    html = logged_in.get(url(app, "new")).content.decode()
    assert '<datalist id="event-names"><option value="export_done">' in html


def test_edit_shows_the_definition_and_saving_it_unchanged_changes_nothing(logged_in, app):
    metric = make_metric(
        app, name="Pro units", aggregation="sum", property="units",
        filters=[{"property": "plan", "op": "in", "value": ["pro", "basic"]},
                 {"property": "tier", "op": "eq", "value": "5"},
                 {"property": "size", "op": "lt", "value": 2.5},
                 {"property": "code", "op": "not_in", "value": [1, "a,b"]},
                 {"property": "beta", "op": "not_exists"}],
    )  # fmt: skip
    assert metric.status == Metric.Status.READY
    response = logged_in.get(url(app, metric.public_id, "edit"))
    form = response.context["form"]
    assert [r.value for r in form.rows] == ["pro, basic", '"5"', "2.5", '[1, "a,b"]', ""]

    response = post_form(
        logged_in, app, url(app, metric.public_id, "edit"), name="Pro units (renamed)", event_name="api_call",
        aggregation="sum", property="units", filter_property=[r.property for r in form.rows],
        filter_op=[r.op for r in form.rows], filter_value=[r.value for r in form.rows],
    )  # fmt: skip

    assert response.status_code == 302
    before = metric.filters
    metric.refresh_from_db()
    assert metric.name == "Pro units (renamed)"
    assert metric.filters == before
    assert metric.status == Metric.Status.READY  # only the name changed: no rebuild


def test_edit_of_the_definition_saves_and_rebuilds(logged_in, app):
    metric = make_metric(app, name="Calls")
    response = post_form(logged_in, app, url(app, metric.public_id, "edit"), name="Calls", event_name="api_call",
                         aggregation="max", property="units")  # fmt: skip
    assert response.status_code == 302
    metric.refresh_from_db()
    assert (metric.aggregation, metric.property, metric.status) == ("max", "units", Metric.Status.BUILDING)


def test_edit_errors_change_nothing(logged_in, app):
    metric = make_metric(app, name="Calls")
    response = post_form(logged_in, app, url(app, metric.public_id, "edit"), name="", event_name="api_call")
    assert response.status_code == 400
    assert "is required" in field_error(response.content.decode(), "name")
    metric.refresh_from_db()
    assert metric.name == "Calls"


def test_delete_asks_for_confirmation_and_deletes(logged_in, app):
    metric = make_metric(app, name="Calls")
    html = logged_in.get(url(app, metric.public_id)).content.decode()
    assert f'action="{url(app, metric.public_id, "delete")}" data-confirm="Delete the metric “Calls”?' in html
    assert logged_in.get(url(app, metric.public_id, "delete")).status_code == 405
    assert Metric.objects.filter(pk=metric.pk).exists()

    response = logged_in.post(url(app, metric.public_id, "delete"))

    assert response.status_code == 302 and response["Location"] == url(app)
    assert not Metric.objects.filter(pk=metric.pk).exists()


# --- Detail: chart and table ---------------------------------------------------------------------


def chart_data(html, element_id="metric-chart-data"):
    raw = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S).group(1)
    return json.loads(raw)


def table_rows(html):
    table = re.search(r"<table class=\"table table-numbers\">.*?</table>", html, re.S).group(0)
    return [
        re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    ]


def test_detail_shows_the_report_as_chart_data_and_as_a_table(logged_in, app):
    today = day_start(timezone.now())
    ingest(app, *[ev("shop-1", today + timedelta(minutes=i), units=10) for i in range(3)],
           *[ev("shop-2", today - timedelta(days=2, minutes=-i), units=1234) for i in range(2)])  # fmt: skip
    metric = make_metric(app, name="Units", aggregation="sum", property="units")

    response = logged_in.get(url(app, metric.public_id))

    html = response.content.decode()
    report = metric_report(metric=metric, period="daily")
    data = chart_data(html)
    assert len(data["total"]) == len(report.points) == 90
    assert data["total"][-1] == 30 and data["total"][-3] == 2468
    assert data["total"] == [int(v) for _, v in report.points]
    rows = table_rows(html)
    assert len(rows) == 90
    assert rows[0] == [today.strftime("%Y-%m-%d"), "30"]  # newest first
    assert rows[2] == [(today - timedelta(days=2)).strftime("%Y-%m-%d"), "2,468"]
    assert '<canvas data-chart="metric-chart-data"' in html
    assert "chart.umd.min.js" in html  # the chart library, served locally, on this page only
    assert "https://" not in re.sub(r"<a [^>]*>", "", html.split("<body")[0])


def test_detail_by_week_and_month_and_for_one_customer(logged_in, app):
    today = day_start(timezone.now())
    ingest(app, *[ev("shop-1", today) for _ in range(3)], ev("shop-2", today), ev("shop-2", today))
    metric = make_metric(app, name="Calls")

    weekly = logged_in.get(url(app, metric.public_id), {"period": "weekly"}).content.decode()
    assert chart_data(weekly)["total"][-1] == 5 and len(chart_data(weekly)["total"]) == 12
    monthly = logged_in.get(url(app, metric.public_id), {"period": "monthly"}).content.decode()
    assert chart_data(monthly)["total"][-1] == 5 and len(chart_data(monthly)["total"]) == 12

    one = logged_in.get(url(app, metric.public_id), {"period": "daily", "customer": "shop-2"})
    assert chart_data(one.content.decode())["total"][-1] == 2
    assert one.context["customer"].platform_id == "shop-2"

    unknown = logged_in.get(url(app, metric.public_id), {"customer": "nobody"}).content.decode()
    assert "No customer matches “nobody”." in unknown


def test_a_grouped_metric_has_a_series_and_a_column_per_group(logged_in, app):
    today = day_start(timezone.now())
    ingest(
        app,
        ev("shop-1", today, plan="pro"),
        ev("shop-1", today, plan="pro"),
        ev("shop-2", today, plan="basic"),
    )
    metric = make_metric(app, name="Calls by plan", group_by="plan")

    html = logged_in.get(url(app, metric.public_id)).content.decode()

    data = chart_data(html)
    assert {g["label"]: g["values"][-1] for g in data["groups"]} == {"pro": 2, "basic": 1}
    assert data["stacked"] is True
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", html.split("table-numbers")[1], re.S).group(1)
    assert re.findall(r">([^<]+)</th>", header) == ["Day", "Total", "basic", "pro"]
    assert table_rows(html)[0][1:] == ["3", "1", "2"]  # today first
    assert 'data-stack="lines"' in html


# --- Plan limits ---------------------------------------------------------------------------------


def test_plan_limits_are_set_changed_and_removed(logged_in, app):
    basic = PlanFactory(app=app, name="Basic", amount=10)
    pro = PlanFactory(app=app, name="Pro", amount=50)
    metric = make_metric(app, name="Calls")
    html = logged_in.get(url(app, metric.public_id)).content.decode()
    assert f'name="thresholds_{basic.public_id}" value="80, 100"' in html  # the default thresholds

    response = logged_in.post(url(app, metric.public_id, "limits"), {
        f"limit_{basic.public_id}": "1,000", f"thresholds_{basic.public_id}": "50, 90%",
        f"limit_{pro.public_id}": "", f"thresholds_{pro.public_id}": "80, 100",
    })  # fmt: skip

    assert response.status_code == 302
    limit = PlanUsageLimit.objects.get(metric=metric)
    assert (limit.plan, limit.limit, limit.thresholds) == (basic, Decimal(1000), [50, 90])
    html = logged_in.get(url(app, metric.public_id)).content.decode()
    assert f'name="limit_{basic.public_id}" value="1000"' in html

    logged_in.post(url(app, metric.public_id, "limits"), {f"limit_{basic.public_id}": ""})
    assert not PlanUsageLimit.objects.exists()


def test_an_invalid_plan_limit_saves_none_of_them(logged_in, app):
    basic = PlanFactory(app=app, name="Basic", amount=10)
    pro = PlanFactory(app=app, name="Pro", amount=50)
    metric = make_metric(app, name="Calls")

    response = logged_in.post(url(app, metric.public_id, "limits"), {
        f"limit_{basic.public_id}": "100", f"thresholds_{basic.public_id}": "80, 100",
        f"limit_{pro.public_id}": "-5", f"thresholds_{pro.public_id}": "80",
    })  # fmt: skip

    assert response.status_code == 400
    row = re.search(r'<tr data-plan="Pro">.*?</tr>', response.content.decode(), re.S).group(0)
    assert "greater than zero" in row and 'value="-5"' in row
    assert not PlanUsageLimit.objects.exists()


# --- Another workspace ---------------------------------------------------------------------------


def test_another_workspace_gets_404_and_changes_nothing(app):
    metric = make_metric(app, name="Calls")
    plan = PlanFactory(app=app, name="Basic", amount=10)
    stranger_user = UserFactory()
    other_app = AppFactory(workspace=MembershipFactory(user=stranger_user).workspace)
    stranger = Client()
    stranger.force_login(stranger_user)

    for path in (url(app), url(app, "new"), url(app, metric.public_id), url(app, metric.public_id, "edit")):
        assert stranger.get(path).status_code == 404, path
    for path in (url(app, metric.public_id, "delete"), url(app, metric.public_id, "limits"),
                 url(app, metric.public_id, "edit"), url(app, "new")):  # fmt: skip
        response = stranger.post(path, {"name": "x", "event_name": "x", f"limit_{plan.public_id}": "5"})
        assert response.status_code == 404, path
    # A metric id under another app of a workspace one does belong to is not found either.
    assert stranger.get(url(other_app, metric.public_id)).status_code == 404
    metric.refresh_from_db()
    assert metric.name == "Calls" and not PlanUsageLimit.objects.exists()
    assert Metric.objects.count() == 1
