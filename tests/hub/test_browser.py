"""The API key flow in a real browser: log in, create an app, add a key, see it once, revoke it."""

import re

import pytest

from hub.models import ApiKey, App
from tests.browser import chromium_page
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_api_key_lifecycle_in_a_browser(live_server, tmp_path):
    user = UserFactory(username="owner@example.com")
    workspace = MembershipFactory(user=user).workspace
    with chromium_page(live_server.url) as page:
        page.goto("/")
        assert "/login/" in page.url
        page.get_by_label("Username or email").fill("owner@example.com")
        page.get_by_label("Password").fill("correct-horse-battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))

        page.get_by_role("link", name="Create your first app").click()
        page.get_by_label("App name").fill("Upsell")
        page.get_by_role("button", name="Create app").click()
        page.wait_for_url(re.compile(r"/apps/[0-9a-f-]+/settings/$"))
        app = App.objects.get(name="Upsell", workspace=workspace)

        page.get_by_role("button", name="Add").click()
        dialog = page.locator("#add-key-dialog")
        dialog.get_by_label("Name").fill("Production")
        dialog.get_by_role("button", name="Create key").click()
        secret = page.locator("#new-key-secret").inner_text().strip()
        key = ApiKey.objects.get(app=app, name="Production")
        assert secret.startswith(key.prefix + "_")
        assert page.get_by_text("will not be shown again").is_visible()
        page.screenshot(path=str(tmp_path / "api-key-created.png"))

        page.reload()
        assert page.locator("#new-key-secret").count() == 0
        assert secret not in page.content()
        row = page.locator(f'tr[data-key-id="{key.pk}"]')
        assert key.prefix in row.inner_text()

        row.get_by_role("button", name="Revoke").click()
        confirm = page.locator("#confirm-dialog")
        assert "Production" in confirm.inner_text()
        confirm.get_by_role("button", name="Confirm").click()
        page.wait_for_selector(f'tr[data-key-id="{key.pk}"].revoked')
        key.refresh_from_db()
        assert key.revoked_at is not None
        assert "Revoked" in page.locator(f'tr[data-key-id="{key.pk}"]').inner_text()
