"""@heymantle/client's getUsageMetricReport and the customer's usage, unmodified, against a live hub."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from events.metrics.definitions import definition_validate
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.services import metric_create
from events.services import usage_events_ingest
from hub.services.customers import customer_identify
from tests.factories import AppFactory, api_key_for
from tests.node_runner import run_node_script

pytestmark = [pytest.mark.node, pytest.mark.django_db(transaction=True)]


def test_get_usage_metric_report_and_customer_usage(live_server):
    app = AppFactory()
    _, secret = api_key_for(app)
    token = customer_identify(app=app, platform_id="shop-a").api_token
    customer_identify(app=app, platform_id="shop-b")
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events = [
        {
            "eventName": "job",
            "customerId": "shop-a",
            "timestamp": (today + timedelta(minutes=i)).isoformat(),
            "properties": {"units": 2},
        }
        for i in range(3)
    ] + [
        {
            "eventName": "job",
            "customerId": "shop-a",
            "timestamp": (today - timedelta(days=2)).isoformat(),
            "properties": {"units": 5},
        },
        {
            "eventName": "job",
            "customerId": "shop-b",
            "timestamp": today.isoformat(),
            "properties": {"units": 7},
        },
    ]
    usage_events_ingest(app=app, raw_events=events)
    metric = metric_create(
        app=app,
        definition=definition_validate(name="Units", event_name="job", aggregation="sum", property="units"),
    )
    metrics_rebuild(app_pk=app.pk)
    rollups_drain(app_pks=[app.pk])

    out = run_node_script(
        "mantle_report.mjs",
        {
            "HUB_API_URL": f"{live_server.url}/v1",
            "HUB_APP_ID": str(app.public_id),
            "HUB_API_KEY": secret,
            "HUB_METRIC_ID": str(metric.public_id),
            "HUB_CUSTOMER_TOKEN": token,
        },
    )

    app_daily = out["appDaily"]["report"]
    assert app_daily["period"] == "daily" and len(app_daily["data"]) == 90
    assert app_daily["data"][-1] == {"date": today.strftime("%Y-%m-%dT00:00:00.000Z"), "value": 13}
    assert app_daily["data"][-3]["value"] == 5
    assert sum(p["value"] for p in app_daily["data"]) == 18

    customer_daily = out["customerDaily"]["report"]["data"]
    assert (customer_daily[-1]["value"], customer_daily[-3]["value"]) == (6, 5)

    monthly = out["tokenMonthly"]["report"]
    assert monthly["period"] == "monthly" and len(monthly["data"]) == 12
    assert sum(p["value"] for p in monthly["data"]) == 11  # the token's customer only

    assert "error" in out["tokenOther"]  # a customer token cannot read another customer
    assert "error" in out["unknown"]

    usage = out["customer"]["usage"][str(metric.public_id)]
    assert usage["name"] == "Units" and usage["eventName"] == "job"
    assert usage["last24HoursValue"] == 6 and usage["last7DaysValue"] == 11 and usage["allTimeValue"] == 11
    assert usage["currentValue"] == usage["monthToDateValue"]  # no subscription: the calendar month
