"""Metrics in a real browser: define one through the form, watch it compute, read its chart and table."""

import os
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from events.metrics.periods import day_start
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.models import Metric
from events.services import usage_events_ingest
from hub.services.customer_refs import customer_get
from tests.browser import chromium_page
from tests.factories import AppFactory, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR", "/tmp")  # metric-screens-*.png, to look at


def test_create_a_metric_and_read_its_chart_and_table(live_server):
    user = UserFactory(username="owner@example.com")
    app = AppFactory(workspace=MembershipFactory(user=user).workspace, name="Upsell")
    today = day_start(timezone.now())
    events = [
        {"eventName": "job_run", "customerId": "shop-1", "timestamp": (today + timedelta(minutes=i)).isoformat(),
         "properties": {"units": 7, "plan": "pro"}}
        for i in range(3)
    ] + [
        {"eventName": "job_run", "customerId": "shop-2", "timestamp": (today - timedelta(days=3)).isoformat(),
         "properties": {"units": 5, "plan": "basic"}},
        {"eventName": "job_run", "customerId": "shop-2", "timestamp": (today - timedelta(days=3)).isoformat(),
         "properties": {"units": 1000, "plan": "free"}},  # filtered out
    ]  # fmt: skip
    usage_events_ingest(app=app, raw_events=events)

    with chromium_page(live_server.url) as page:
        page.goto("/login/")
        page.get_by_label("Username or email").fill("owner@example.com")
        page.get_by_label("Password").fill("correct-horse-battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/w/[\w-]+/$"))

        page.goto(f"/apps/{app.public_id}/usage-events/")
        page.get_by_role("link", name="Metrics", exact=True).click()
        page.get_by_role("link", name="New metric").first.click()

        # Counting needs no property: the field is off until another aggregation is chosen.
        assert page.get_by_label("Property", exact=True).is_disabled()
        page.get_by_label("Name", exact=True).fill("Units run")
        page.get_by_label("Event name").fill("job_run")
        page.get_by_label("Aggregation").select_option("sum")
        assert page.get_by_label("Property", exact=True).is_enabled()
        page.get_by_label("Property", exact=True).fill("units")
        page.get_by_label("Filter property").last.fill("plan")
        page.get_by_label("Filter condition").last.select_option("in")
        page.get_by_label("Filter value").last.fill("pro, basic")
        page.get_by_role("button", name="+ Add filter").click()
        assert page.get_by_label("Filter property").count() == 2
        page.get_by_role("button", name="Remove filter").last.click()
        assert page.get_by_label("Filter property").count() == 1
        page.get_by_role("button", name="Create metric").click()

        page.wait_for_url(re.compile(r"/metrics/[0-9a-f-]+/$"))
        metric = Metric.objects.get(app=app)
        assert metric.filters == [{"property": "plan", "op": "in", "value": ["pro", "basic"]}]
        assert page.locator('[data-status="building"]').is_visible()

        # What the worker does; the page notices by itself.
        metrics_rebuild(app_pk=app.pk)
        rollups_drain(app_pks=[app.pk])
        page.wait_for_selector('h1 [data-status="ready"]', timeout=20_000)

        page.get_by_role("link", name="Metrics", exact=True).first.click()
        row = page.locator(f'tr[data-metric-id="{metric.public_id}"]')
        assert "Units run" in row.inner_text() and "job_run" in row.inner_text()
        assert row.locator('[data-status="ready"]').is_visible()
        this_month = 21 + (5 if (today - timedelta(days=3)).month == today.month else 0)
        assert row.locator("[data-value]").inner_text() == str(this_month)  # 3 × 7 today, 5 three days ago
        page.screenshot(path=f"{SCREENSHOTS}/metric-screens-metrics-list.png", full_page=True)

        row.get_by_role("link", name="Units run").click()
        canvas = page.locator("canvas[data-chart]")
        page.wait_for_selector('canvas[data-chart][data-drawn="true"]')
        box = canvas.bounding_box()
        assert box["width"] > 500 and box["height"] > 200
        drawn = page.evaluate(
            "() => { const c = Chart.getChart(document.querySelector('canvas[data-chart]'));"
            " return c.data.datasets[0].data.slice(-4); }"
        )
        assert drawn == [5, 0, 0, 21]
        page.screenshot(path=f"{SCREENSHOTS}/metric-screens-metric-detail-chart.png", full_page=True)

        table = page.locator("[data-table-view]")
        assert table.is_hidden()
        page.get_by_role("button", name="Table").click()
        assert table.is_visible() and canvas.is_hidden()
        assert page.get_by_role("button", name="Table").get_attribute("aria-pressed") == "true"
        rows = table.locator("tbody tr")
        assert rows.count() == 90
        assert rows.first.inner_text().split() == [today.strftime("%Y-%m-%d"), "21"]  # newest first
        assert rows.nth(3).inner_text().split() == [(today - timedelta(days=3)).strftime("%Y-%m-%d"), "5"]
        page.screenshot(path=f"{SCREENSHOTS}/metric-screens-metric-detail-table.png", full_page=True)
        page.get_by_role("button", name="Chart").click()
        assert canvas.is_visible()

        customer = customer_get(app=app, reference="shop-1")
        page.goto(f"/apps/{app.public_id}/customers/{customer.public_id}/")
        card = page.locator(f'[data-usage-metric="{metric.public_id}"]')
        page.wait_for_selector(f'[data-usage-metric="{metric.public_id}"] canvas[data-drawn="true"]')
        assert card.locator(".stat", has_text="All time").locator("dd").inner_text() == "21"
        page.screenshot(path=f"{SCREENSHOTS}/metric-screens-customer-usage.png", full_page=True)

        page.goto(f"/apps/{app.public_id}/metrics/{metric.public_id}/edit/")
        page.screenshot(path=f"{SCREENSHOTS}/metric-screens-metric-form.png", full_page=True)
