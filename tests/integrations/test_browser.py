"""The Segment settings screen in a real browser: enter a write key, choose apps and activities,
save, send a test event, see it in the delivery log."""

import re

import pytest

from integrations.models import Integration
from tests.browser import chromium_page
from tests.factories import AppFactory, MembershipFactory, UserFactory
from tests.segment_standin import SegmentStandIn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_segment_settings_screen_in_a_browser(live_server, settings, tmp_path):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    standin = SegmentStandIn(write_key="wk_browser_9876").start()
    user = UserFactory(username="owner@example.com")
    workspace = MembershipFactory(user=user).workspace
    upsell = AppFactory(workspace=workspace, name="Upsell")
    AppFactory(workspace=workspace, name="Reviews")
    try:
        with chromium_page(live_server.url) as page:
            page.goto("/login/")
            page.get_by_label("Username or email").fill("owner@example.com")
            page.get_by_label("Password").fill("correct-horse-battery")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))

            page.get_by_role("link", name="Integrations").click()
            page.get_by_role("link", name="Add Segment integration").click()
            page.get_by_label("Name", exact=True).fill("Production")
            page.get_by_label("Write key").fill("wk_browser_9876")
            page.get_by_role("radio", name="Custom host").check()
            page.get_by_label("Custom host URL").fill(standin.url)
            page.get_by_label("Upsell").check()
            page.get_by_label("Customer installed app").check()
            page.get_by_label("Customer upgraded plan").check()
            page.get_by_role("button", name="Save").click()
            page.wait_for_url(re.compile(r"/integrations/\d+/$"))

            integration = Integration.objects.get(workspace=workspace)
            assert integration.write_key == "wk_browser_9876"
            assert list(integration.apps.all()) == [upsell]
            assert integration.activities == ["installed", "upgraded"]
            assert "wk_browser_9876" not in page.content()
            assert page.locator("#masked-key").inner_text().endswith("9876")

            page.get_by_role("button", name="Send test event").click()
            result = page.locator("#test-result")
            result.wait_for()
            assert "Test event delivered." in result.inner_text() and "HTTP 200" in result.inner_text()
            assert standin.messages[0]["event"] == "Hub Test Event"
            page.screenshot(path=str(tmp_path / "segment-settings.png"))

            page.get_by_role("link", name="Delivery log").first.click()
            row = page.locator("#deliveries tbody tr[data-delivery-id]").first
            assert "Hub Test Event" in row.inner_text() and "Delivered" in row.inner_text()
            row.get_by_role("button", name="Hub Test Event").click()  # shows request and response
            detail = page.locator("tr.delivery-detail").first
            assert '"event": "Hub Test Event"' in detail.inner_text() and "HTTP 200" in detail.inner_text()
            assert page.locator('[data-stat="delivered"]').inner_text() == "1"
    finally:
        standin.stop()
