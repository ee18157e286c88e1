"""API keys: created with a typed prefix, stored as a hash, shown once, revocable."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from hub.errors import AuthenticationError, HubError
from hub.models import ApiKey
from hub.services import accounts
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db


def test_key_has_typed_prefix_and_only_its_hash_is_stored(app):
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    assert secret.startswith("hub_live_")
    assert secret.startswith(api_key.prefix + "_")
    row = ApiKey.objects.get(pk=api_key.pk)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(v) for v in ApiKey.objects.values().get(pk=api_key.pk).values()}


def test_keys_are_unique(app):
    secrets_ = {accounts.api_key_create(app=app, name=f"k{i}")[1] for i in range(20)}
    assert len(secrets_) == 20


def test_authenticate_returns_the_key_for_the_right_secret(app):
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    assert accounts.api_key_authenticate(key=secret, app_public_id=str(app.public_id)) == api_key
    assert accounts.api_key_authenticate(key=secret) == api_key


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # wrong secret, right prefix
        lambda s: "hub_live_nope_" + s[-40:],  # unknown prefix
        lambda s: "",  # empty
        lambda s: "no-underscores-at-all",
        lambda s: s + "x" * 300,  # absurdly long
    ],
)
def test_wrong_keys_are_refused(app, mangle):
    _, secret = accounts.api_key_create(app=app, name="ci")
    with pytest.raises(AuthenticationError):
        accounts.api_key_authenticate(key=mangle(secret), app_public_id=str(app.public_id))


def test_revoked_key_is_refused(app):
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    accounts.api_key_revoke(api_key=api_key)
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.api_key_authenticate(key=secret)


def test_key_of_one_app_is_refused_with_another_apps_id(app):
    other = AppFactory()
    _, secret = accounts.api_key_create(app=app, name="ci")
    with pytest.raises(AuthenticationError):
        accounts.api_key_authenticate(key=secret, app_public_id=str(other.public_id))


def test_malformed_app_id_is_refused(app):
    _, secret = accounts.api_key_create(app=app, name="ci")
    with pytest.raises(AuthenticationError, match="app id"):
        accounts.api_key_authenticate(key=secret, app_public_id="not-a-uuid")


def test_last_used_is_written_at_most_once_a_minute(app, django_assert_num_queries):
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    assert api_key.last_used_at is None
    accounts.api_key_authenticate(key=secret)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    # Within the minute: no UPDATE. (The lookup itself runs on psycopg's cursor, outside the
    # ORM's query log, so the log must stay empty.)
    with django_assert_num_queries(0):
        accounts.api_key_authenticate(key=secret)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first
    # A minute later it is written again (by then the per-process key cache has expired).
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now() - timedelta(seconds=61))
    accounts.api_key_cache_clear()
    accounts.api_key_authenticate(key=secret)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first


def test_key_needs_a_name(app):
    with pytest.raises(HubError):
        accounts.api_key_create(app=app, name="  ")


def test_revoking_twice_keeps_the_first_time(app):
    api_key, _ = accounts.api_key_create(app=app, name="ci")
    accounts.api_key_revoke(api_key=api_key)
    first = ApiKey.objects.get(pk=api_key.pk).revoked_at
    accounts.api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk))
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_expires(app, settings, clock):
    """Another process's revocation (a direct UPDATE here) is seen within HUB_API_KEY_CACHE_SECONDS."""
    settings.HUB_API_KEY_CACHE_SECONDS = 0.3
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    accounts.api_key_authenticate(key=secret)
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    clock.advance(0.4)
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.api_key_authenticate(key=secret)


def test_with_the_cache_off_every_request_sees_revocation(app, settings):
    settings.HUB_API_KEY_CACHE_SECONDS = 0
    api_key, secret = accounts.api_key_create(app=app, name="ci")
    accounts.api_key_authenticate(key=secret)
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.api_key_authenticate(key=secret)
