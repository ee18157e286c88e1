"""`manage.py hub_rotate_secrets`: every encrypted column re-encrypted under the new primary key."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import models
from django.db.models.functions import Cast
from django.test import override_settings

from hub.crypto import EncryptedTextField, SecretDecryptionError
from hub.models import Customer
from hub.secret_rotation import encrypted_fields
from hub.services.customers import customer_identify
from integrations.models import Integration
from integrations.services import integration_save
from integrations.sources.models import Source
from integrations.sources.services import (
    source_by_webhook_token,
    source_by_write_key,
    source_cache_clear,
    source_create,
)
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def stored_tokens() -> dict:
    """pk -> the Fernet token as stored in the column."""
    return dict(Customer.objects.annotate(raw=Cast("api_token", models.TextField())).values_list("pk", "raw"))


def stored(model, field: str) -> dict:
    """pk -> the Fernet token as stored in `model`'s column `field`."""
    return dict(model.objects.annotate(raw=Cast(field, models.TextField())).values_list("pk", "raw"))


def rotate(*args) -> str:
    out = StringIO()
    call_command("hub_rotate_secrets", *args, stdout=out)
    return out.getvalue()


def test_every_encrypted_column_is_discovered():
    found = {(model, f.name) for model, f in encrypted_fields()}
    assert {
        (Customer, "api_token"),
        (Integration, "write_key"),
        (Source, "write_key"),
        (Source, "webhook_token"),
        (Source, "shared_secret"),
    } <= found
    assert all(isinstance(f, EncryptedTextField) for _, f in encrypted_fields())


def test_rotation_moves_every_value_to_the_new_key_in_batches(app):
    with override_settings(HUB_ENCRYPTION_KEYS=[OLD_KEY]):
        tokens = {
            r.customer.pk: r.api_token
            for r in (customer_identify(app=app, platform_id=f"shop-{i}") for i in range(5))
        }
        placeholder = CustomerFactory(app=app, platform_id="no-token-yet", placeholder=True)
    before = stored_tokens()

    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = rotate("--batch-size", "2")

    assert "hub.Customer.api_token: 5 re-encrypted, 1 empty" in output
    after = stored_tokens()
    assert all(after[pk] != before[pk] for pk in tokens)
    assert after[placeholder.pk] == ""
    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now be dropped
        for pk, token in tokens.items():
            assert Customer.objects.get(pk=pk).api_token == token
    with override_settings(HUB_ENCRYPTION_KEYS=[OLD_KEY]), pytest.raises(SecretDecryptionError):
        Customer.objects.get(pk=next(iter(tokens))).api_token  # noqa: B018


def test_undecryptable_values_are_reported_and_left_alone(app):
    with override_settings(HUB_ENCRYPTION_KEYS=[OLD_KEY]):
        good = customer_identify(app=app, platform_id="good")
        bad = customer_identify(app=app, platform_id="bad")
    Customer.objects.filter(pk=bad.customer.pk).update(
        api_token=models.Value("not-a-fernet-token", models.TextField())
    )

    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        out = StringIO()
        with pytest.raises(CommandError, match="1 value"):
            call_command("hub_rotate_secrets", stdout=out)
    assert f"1 undecryptable (pk {bad.customer.pk})" in out.getvalue()
    assert stored_tokens()[bad.customer.pk] == "not-a-fernet-token"
    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY]):
        assert Customer.objects.get(pk=good.customer.pk).api_token == good.api_token


SOURCE_COLUMNS = ("write_key", "webhook_token", "shared_secret")


def test_integration_write_keys_and_source_credentials_move_to_the_new_key(app, workspace):
    """Segment write keys we send with, and the sources' write keys, webhook tokens and secrets."""
    with override_settings(HUB_ENCRYPTION_KEYS=[OLD_KEY]):
        integration = integration_save(workspace=workspace, name="Segment prod", write_key="seg-write-key-1")
        signed = source_create(app=app, name="Signed", shared_secret="hook-secret")
        unsigned = source_create(app=app, name="Unsigned")
    before = {f: stored(Source, f) for f in SOURCE_COLUMNS} | {
        "integration": stored(Integration, "write_key")
    }

    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = rotate()

    assert "integrations.Integration.write_key: 1 re-encrypted, 0 empty" in output
    assert "sources.Source.write_key: 2 re-encrypted, 0 empty" in output
    assert "sources.Source.webhook_token: 2 re-encrypted, 0 empty" in output
    assert "sources.Source.shared_secret: 1 re-encrypted, 1 empty" in output
    assert stored(Integration, "write_key")[integration.pk] != before["integration"][integration.pk]
    for f in ("write_key", "webhook_token"):
        assert all(stored(Source, f)[s.pk] != before[f][s.pk] for s in (signed, unsigned))
    assert stored(Source, "shared_secret")[unsigned.pk] == ""
    with override_settings(HUB_ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now be dropped
        assert Integration.objects.get(pk=integration.pk).write_key == "seg-write-key-1"
        for source in (signed, unsigned):
            again = Source.objects.get(pk=source.pk)
            assert (again.write_key, again.webhook_token, again.shared_secret) == (
                source.write_key,
                source.webhook_token,
                source.shared_secret,
            )
            # The credentials still find their source (looked up by hash, not by the ciphertext).
            source_cache_clear()
            assert source_by_write_key(source.write_key).pk == source.pk
            assert source_by_webhook_token(source.webhook_token).pk == source.pk
    with override_settings(HUB_ENCRYPTION_KEYS=[OLD_KEY]), pytest.raises(SecretDecryptionError):
        Source.objects.get(pk=signed.pk).shared_secret  # noqa: B018
