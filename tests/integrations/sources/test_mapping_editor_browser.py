"""The mapping editor in a real browser: a person builds Segment's `@if` without writing JSON,
tests it on the sample message, and saves it."""

import re

import pytest

from integrations.sources.models import Mapping
from integrations.sources.services import source_create
from tests.browser import chromium_page
from tests.factories import AppFactory, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_build_an_if_directive_without_json(live_server):
    user = UserFactory(username="owner@example.com")
    workspace = MembershipFactory(user=user).workspace
    app = AppFactory(workspace=workspace, name="Upsell")
    source = source_create(app=app, name="Segment", presets=())
    with chromium_page(live_server.url) as page:
        page.goto("/login/")
        page.get_by_label("Username or email").fill("owner@example.com")
        page.get_by_label("Password").fill("correct-horse-battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))

        page.goto(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/")
        page.get_by_label("Name", exact=True).fill("Plans")
        fields = page.locator('[data-action-fields="usage_event"]')  # the chosen action's targets
        assert not fields.get_by_label("event_name then").is_visible()
        fields.get_by_label("event_name kind").select_option(label="If (exists / blank)")
        fields.get_by_label("event_name value").fill("$.properties.plan")
        fields.get_by_label("event_name test").select_option("exists")
        fields.get_by_label("event_name then").fill("{{event}} ({{properties.plan}})")
        fields.get_by_label("event_name else").fill("$.event")
        fields.get_by_label("customer_id kind").select_option("path")
        fields.get_by_label("customer_id value").fill("$.properties.shop")

        page.get_by_role("button", name="Test mapping").click()  # the sample has no plan: "else"
        result = page.get_by_test_id("test-result")
        result.get_by_text("the mapping would write this record").wait_for()
        assert '"event_name": "Report Generated"' in result.inner_text()

        page.get_by_role("button", name="Save mapping").click()
        page.wait_for_url(re.compile(rf"/sources/{source.public_id}/$"))
    mapping = Mapping.objects.get(source=source, name="Plans")
    assert mapping.fields == {
        "event_name": {"@if": {"exists": {"@path": "$.properties.plan"},
                               "then": {"@template": "{{event}} ({{properties.plan}})"}, "else": {"@path": "$.event"}}},
        "customer_id": {"path": "$.properties.shop"},
    }  # fmt: skip
