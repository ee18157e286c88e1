"""Web screens through Django's test client: scoping, CSRF, the API keys card."""

import re

import pytest
from django.test import Client

from hub.models import ApiKey, App
from tests.factories import AppFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_screens_need_login(client, app):
    for url in ["/", f"/w/{app.workspace.slug}/", f"/apps/{app.public_id}/settings/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_login_with_email_and_password(client, user):
    response = client.post("/login/", {"username": user.email, "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/").status_code == 302  # home redirects to the first workspace


def test_workspace_home_lists_its_apps(logged_in, app):
    response = logged_in.get(f"/w/{app.workspace.slug}/")
    assert response.status_code == 200
    assert app.name in response.content.decode()


def test_create_app(logged_in, workspace):
    response = logged_in.post(f"/w/{workspace.slug}/apps/new/", {"name": "Upsell"})
    new = App.objects.get(workspace=workspace, name="Upsell")
    assert response.status_code == 302
    assert response["Location"] == f"/apps/{new.public_id}/settings/"


def test_duplicate_app_name_is_a_form_error(logged_in, app):
    response = logged_in.post(f"/w/{app.workspace.slug}/apps/new/", {"name": app.name})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_api_key_is_shown_once_then_only_its_prefix(logged_in, app):
    response = logged_in.post(f"/apps/{app.public_id}/api-keys/", {"name": "Production"}, follow=True)
    page = response.content.decode()
    secret = re.search(r'id="new-key-secret"[^>]*>([^<]+)<', page).group(1)
    key = ApiKey.objects.get(app=app, name="Production")
    assert secret.startswith(key.prefix + "_")
    assert "will not be shown again" in page
    again = logged_in.get(f"/apps/{app.public_id}/settings/").content.decode()
    assert secret not in again
    assert key.prefix in again


def test_revoke_api_key(logged_in, app, api_key):
    response = logged_in.post(f"/apps/{app.public_id}/api-keys/{api_key[0].pk}/revoke/")
    assert response.status_code == 302
    api_key[0].refresh_from_db()
    assert api_key[0].revoked_at is not None


def test_user_of_another_workspace_gets_404(app, api_key):
    stranger = MembershipFactory(user=UserFactory()).user
    client = Client()
    client.force_login(stranger)
    urls_get = [
        f"/w/{app.workspace.slug}/",
        f"/w/{app.workspace.slug}/apps/new/",
        f"/apps/{app.public_id}/settings/",
    ]
    for url in urls_get:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/apps/{app.public_id}/api-keys/", {"name": "x"}).status_code == 404
    assert client.post(f"/apps/{app.public_id}/api-keys/{api_key[0].pk}/revoke/").status_code == 404
    api_key[0].refresh_from_db()
    assert api_key[0].revoked_at is None
    assert not ApiKey.objects.filter(name="x").exists()


def test_key_of_another_app_cannot_be_revoked_through_my_app(logged_in, app):
    foreign = AppFactory()
    from hub.services import accounts

    foreign_key, _ = accounts.api_key_create(app=foreign, name="theirs")
    response = logged_in.post(f"/apps/{app.public_id}/api-keys/{foreign_key.pk}/revoke/")
    assert response.status_code == 404
    foreign_key.refresh_from_db()
    assert foreign_key.revoked_at is None


def test_forms_are_csrf_protected(user, app):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/apps/{app.public_id}/api-keys/", {"name": "x"}).status_code == 403
    assert client.post(f"/w/{app.workspace.slug}/apps/new/", {"name": "x"}).status_code == 403
    page = client.get(f"/apps/{app.public_id}/settings/").content.decode()
    assert page.count("csrfmiddlewaretoken") >= 2


def test_pages_use_only_local_assets(logged_in, app):
    page = logged_in.get(f"/apps/{app.public_id}/settings/").content.decode()
    assert not re.search(r'(src|href)="(https?:)?//', page)
