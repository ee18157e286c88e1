"""The destination screens in a real browser: add a Metronome destination, edit its mapping with
the live preview on a stored event, send a test event, see it in the delivery log, start a backfill."""

import os
import re
from pathlib import Path

import pytest

from events.services import usage_events_ingest
from integrations.models import Delivery, Integration
from integrations.services import integration_save
from tests.browser import chromium_page
from tests.destination_standins import MetronomeStandIn
from tests.factories import AppFactory, MembershipFactory, UserFactory
from tests.integrations.conftest import make_customer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("HUB_SCREENSHOTS", "/tmp/hub-screens"))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, width)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_metronome_destination_screens_in_a_browser(live_server, settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    server = MetronomeStandIn(token="mt_browser_token_1234").start()
    user = UserFactory(username="owner@example.com")
    workspace = MembershipFactory(user=user).workspace
    app = AppFactory(workspace=workspace, name="Upsell")
    customer = make_customer(app, "shop-7")
    usage_events_ingest(
        app=app,
        raw_events=[
            {"eventName": "api_call", "eventId": "ev-1", "customerId": "shop-7", "properties": {"n": 3}}
        ],
    )
    errors: list[str] = []
    try:
        with chromium_page(live_server.url) as page:
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto("/login/")
            page.get_by_label("Username or email").fill("owner@example.com")
            page.get_by_label("Password").fill("correct-horse-battery")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))

            page.goto(f"/w/{workspace.slug}/integrations/")
            page.get_by_role("link", name="Add Metronome").click()
            page.get_by_label("Name", exact=True).fill("Metronome")
            page.get_by_label("Base URL").fill(server.url)
            page.get_by_label("API token").fill("mt_browser_token_1234")
            page.get_by_label("Upsell").check()
            _shot(page, "destination-new")
            page.get_by_role("button", name="Save").click()
            page.wait_for_url(re.compile(r"/destinations/\d+/$"))
            assert "1234" in page.locator("#masked-secret").inner_text()
            assert "mt_browser_token_1234" not in page.content()
            _shot(page, "destination-edit")

            # The mapping editor previews the latest stored event live.
            page.get_by_role("link", name="Edit mapping").click()
            page.locator("#preview-result pre").wait_for()
            assert '"transaction_id": "ev-1"' in page.locator("#preview-result").inner_text()
            assert str(customer.public_id) in page.locator("#preview-result").inner_text()
            mapping = page.get_by_label("Mapping")
            mapping.fill(mapping.input_value().replace('"$.context.groupId"', '"$.customer.platformId"'))
            page.get_by_text('"customer_id": "shop-7"').wait_for()
            page.get_by_label("Trigger").fill('type = "track" and event = "other"')
            page.get_by_text("The trigger does not match").wait_for()
            page.get_by_label("Trigger").fill('type = "track" and ')
            page.get_by_text("Trigger:").wait_for()
            _shot(page, "subscription-edit")
            page.get_by_label("Trigger").fill('type = "track"')
            page.get_by_role("button", name="Save").click()
            page.wait_for_url(re.compile(r"/destinations/\d+/$"))

            page.get_by_role("button", name="Send test event").click()
            page.locator("#test-result").wait_for()
            assert "Test event delivered" in page.locator("#test-result").inner_text()
            page.get_by_role("link", name="Delivery log").first.click()
            page.get_by_text("hub_test_event").first.wait_for()
            _shot(page, "destination-log")

            # A Segment integration lists its (off) subscriptions for usage events and customers.
            segment = integration_save(
                workspace=workspace, name="Segment", write_key="wk_x", region="custom",
                custom_host=server.url, apps=[app], activities=["installed"],
            )  # fmt: skip
            page.goto(f"/w/{workspace.slug}/integrations/{segment.pk}/")
            page.get_by_role("link", name="Usage events as track calls").wait_for()
            _shot(page, "segment-form")

        integration = Integration.objects.get(kind="metronome")
        assert segment.subscriptions.filter(enabled=False).count() == 3
        assert integration.secret == "mt_browser_token_1234"
        assert integration.subscriptions.get().fields["customer_id"] == {"path": "$.customer.platformId"}
        assert (
            Delivery.objects.filter(integration=integration, item_kind="test", status="delivered").count()
            == 1
        )
        assert [e["event_type"] for e in server.items] == ["hub_test_event"]
        assert not errors, errors
    finally:
        server.stop()


def test_a_customer_backfill_in_a_browser(live_server, settings, monkeypatch):
    """Connect ChartMogul after the fact and backfill its customers and contacts from its page:
    choose what to send, the range, start it, and watch its progress."""
    from datetime import timedelta

    from django.utils import timezone

    from hub.services.customers import customer_identify
    from integrations import backfill as backfills
    from integrations.destinations import destination_save
    from tests.destination_standins import ChartMogulStandIn

    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    enqueued: list[int] = []
    monkeypatch.setattr(backfills, "_enqueue", enqueued.append)  # the test runs it, as a worker would
    server = ChartMogulStandIn().start()
    user = UserFactory(username="owner@example.com")
    workspace = MembershipFactory(user=user).workspace
    app = AppFactory(workspace=workspace, name="Upsell")
    for i in range(3):
        customer_identify(app=app, platform_id=f"shop-{i}", name=f"Shop {i}",
                          contacts=[{"email": f"owner@shop-{i}.test", "name": "Ann Lee", "label": "owner"}])  # fmt: skip
    chartmogul = destination_save(workspace=workspace, kind="chartmogul", name="ChartMogul",
                                  secret=server.url + ChartMogulStandIn.path, apps=[app])  # fmt: skip
    errors: list[str] = []
    try:
        with chromium_page(live_server.url) as page:
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto("/login/")
            page.get_by_label("Username or email").fill("owner@example.com")
            page.get_by_label("Password").fill("correct-horse-battery")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))

            page.goto(f"/w/{workspace.slug}/destinations/{chartmogul.pk}/")
            card = page.locator("#backfill")
            assert card.get_by_label("Send").input_value() == "customers"
            since = timezone.localtime(timezone.now() - timedelta(days=1))
            card.get_by_label("From").fill(since.strftime("%Y-%m-%dT%H:%M"))
            card.get_by_label("To").fill(
                timezone.localtime(timezone.now() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
            )
            card.get_by_role("button", name="Start backfill").click()
            page.get_by_text("Backfill of 3 customers started.").wait_for()
            assert "0 of 3 customers" in page.locator("#backfills").inner_text()
            _shot(page, "destination-backfill-running")

            while backfills.backfill_run(backfill_id=enqueued[0]):
                pass
            from integrations import delivery

            delivery.deliveries_send(integration_id=chartmogul.pk, budget_seconds=10)
            page.reload()
            row = page.locator("#backfills tbody tr").first
            assert "Customers and contacts" in row.inner_text() and "Done" in row.inner_text()
            assert "3 of 3 customers, 6 sent or queued" in row.inner_text()
            _shot(page, "destination-backfill-done")
        assert sorted(i["type"] for i in server.items) == ["Send Contact"] * 3 + ["Send Customer"] * 3
        assert not errors, errors
    finally:
        server.stop()
