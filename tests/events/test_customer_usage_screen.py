"""The Customer view's Usage section: a card per metric with its windows and the last 90 days."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from events.metric_views import number_display
from events.metrics.periods import day_start
from events.metrics.selectors import customer_usage, metric_report, metrics_daily_values
from hub.services.customer_refs import customer_get
from tests.events.test_metric_screens import chart_data, ev, ingest, make_metric

pytestmark = pytest.mark.django_db


def test_customer_view_shows_each_metric_usage_windows_and_90_days(logged_in, app):
    now = timezone.now()
    today = day_start(now)
    ingest(
        app,
        ev("shop-1", now, units=3),
        ev("shop-1", today - timedelta(days=10), units=4),
        ev("shop-1", today - timedelta(days=200), units=5),
        ev("shop-2", now, units=1000),  # another customer
    )
    calls = make_metric(app, name="Calls")
    units = make_metric(app, name="Units", aggregation="sum", property="units")

    customer = customer_get(app=app, reference="shop-1")
    response = logged_in.get(f"/apps/{app.public_id}/customers/{customer.public_id}/")

    html = response.content.decode()
    usage = customer_usage(customer=customer)
    card = re.search(rf'data-usage-metric="{units.public_id}".*?</article>', html, re.S).group(0)
    stats = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", card))
    u = usage[str(units.public_id)]
    assert stats == {
        "Current period": number_display(u["currentValue"]),
        "Month to date": number_display(u["monthToDateValue"]),
        "Last 24 h": "3",
        "7 days": "3",
        "30 days": "7",
        "90 days": "7",
        "365 days": "12",
        "All time": "12",
    }
    data = chart_data(html, f"usage-chart-{units.public_id}")
    assert len(data["total"]) == 90 and data["total"][-1] == 3 and data["total"][-11] == 4
    assert sum(data["total"]) == 7
    calls_card = re.search(rf'data-usage-metric="{calls.public_id}".*?</article>', html, re.S).group(0)
    assert "<dt>All time</dt><dd>3</dd>" in calls_card
    assert "Billing period" in html


def test_customer_daily_values_are_the_daily_report_of_every_aggregation(app):
    today = day_start(timezone.now())
    ingest(app, *[
        ev("shop-1", today - timedelta(days=d, hours=h), units=d * 3 + h, user=f"u{(d + h) % 4}")
        for d in (0, 1, 5, 40) for h in (0, 1, 2)
    ])  # fmt: skip
    metrics = [make_metric(app, name=a, aggregation=a, property="units" if a != "unique_count" else "user")
               for a in ("count", "sum", "min", "max", "average", "unique_count", "latest")]  # fmt: skip

    customer = customer_get(app=app, reference="shop-1")
    daily = metrics_daily_values(metrics=metrics, customer=customer, start=today - timedelta(days=89),
                                 end=today + timedelta(days=1))  # fmt: skip
    for metric in metrics:
        report = metric_report(metric=metric, period="daily", customer=customer)
        assert daily[metric.pk] == report.points, metric.aggregation


def test_customer_view_without_metrics_invites_to_define_one(logged_in, app):
    ingest(app, ev("shop-1", timezone.now()))

    customer = customer_get(app=app, reference="shop-1")
    html = logged_in.get(f"/apps/{app.public_id}/customers/{customer.public_id}/").content.decode()
    assert "No metrics yet." in html and "chart.umd.min.js" not in html
