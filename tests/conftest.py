import pytest
from django.test import Client

from tests.factories import AppFactory, MembershipFactory, UserFactory, api_key_for


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def workspace(user):
    return MembershipFactory(user=user).workspace


@pytest.fixture
def app(workspace):
    return AppFactory(workspace=workspace)


@pytest.fixture
def api_key(app):
    """(ApiKey, secret) of `app`."""
    return api_key_for(app)


@pytest.fixture
def api_client(app, api_key):
    """A Django test client sending the app's Mantle-style credentials on every request."""
    return Client(headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]})


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _every_hour_row_kept(settings):
    """The metric tests read with a fixed clock days in the past: keep their hour rows.

    Pruning old hour rows is tested on its own (tests/events/test_rollups_sql.py).
    """
    settings.HUB_METRICS_HOUR_ROWS_HOURS = 0


@pytest.fixture(autouse=True)
def _fresh_reference_cache():
    """Customer-reference caching is per process; tests must not see each other's ids."""
    from hub.customers import reference_cache_clear
    from hub.services import api_key_cache_clear

    reference_cache_clear()
    api_key_cache_clear()
    yield
    reference_cache_clear()
    api_key_cache_clear()
