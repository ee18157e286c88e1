"""The operator's console: every model is registered, lists and searches work, secrets never show."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from hub.customers import customer_identify
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

OUR_APPS = {"hub", "events", "integrations", "sources"}


def test_every_model_is_registered():
    missing = [
        m.__name__
        for m in apps.get_models()
        if m._meta.app_label in OUR_APPS and not admin.site.is_registered(m)
    ]
    assert missing == []


def test_changelists_and_search_render_without_secrets(app, api_key):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    result = customer_identify(app=app, platform_id="1", name="Acme")
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url + "?q=a")
        assert response.status_code == 200, url
        html = response.content.decode()
        assert api_key[0].secret_hash not in html and result.api_token not in html
    html = client.get(f"/admin/hub/apikey/{api_key[0].pk}/change/").content.decode()
    assert api_key[0].secret_hash not in html and api_key[1] not in html
    html = client.get(f"/admin/hub/customer/{result.customer.pk}/change/").content.decode()
    assert result.api_token not in html and result.customer.api_token_hash not in html


def test_admin_revoke_action_uses_the_service(app, api_key):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    client.post("/admin/hub/apikey/", {"action": "revoke", "_selected_action": [api_key[0].pk]})
    api_key[0].refresh_from_db()
    assert api_key[0].revoked_at is not None
