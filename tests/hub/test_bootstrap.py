"""`make run`'s first-run setup: the demo app gets an API key, kept so every run prints a working curl."""

import pytest

from hub.bootstrap import demo_curl, hub_bootstrap
from hub.models import ApiKey
from hub.services.accounts import api_key_authenticate, api_key_revoke

pytestmark = pytest.mark.django_db


def test_the_demo_app_has_an_api_key_kept_across_runs(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = hub_bootstrap(email="admin@example.com", password="pw-1234567890")
    app_id = first.demo["apps"][0]["id"]
    assert str(api_key_authenticate(app_public_id=app_id, key=first.demo_api_key).app.public_id) == app_id
    assert (tmp_path / "demo-api-key.txt").stat().st_mode & 0o777 == 0o600
    again = hub_bootstrap(email="admin@example.com")
    assert again.demo_api_key == first.demo_api_key and ApiKey.objects.count() == 1

    api_key_revoke(api_key=ApiKey.objects.get())  # revoked on the Settings screen: a new one next run
    third = hub_bootstrap(email="admin@example.com")
    assert third.demo_api_key != first.demo_api_key
    curl = demo_curl(url="http://127.0.0.1:8000/", app_id=app_id, api_key=third.demo_api_key)
    assert curl.startswith("curl ") and "/v1/usage_events" in curl and third.demo_api_key in curl
