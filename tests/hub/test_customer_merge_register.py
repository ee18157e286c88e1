"""Packages move their own rows in a customer merge through a registered handler, in its transaction."""

import pytest
from django.db import connection

from events.models import MetricRollup, MetricUniqueValue, UsageEvent, UsageSignal
from events.services import usage_events_ingest
from hub.models import Customer
from hub.services import customer_merge
from hub.services.customer_merge import customer_merge_register
from hub.services.customers import customer_identify

pytestmark = pytest.mark.django_db


def ingest(app, ref, event_id):
    return usage_events_ingest(
        app=app, raw_events=[{"eventName": "x", "eventId": event_id, "customerId": ref}]
    )


@pytest.fixture
def handlers(monkeypatch):
    """The registry as the apps left it, restored after the test."""
    monkeypatch.setattr(customer_merge, "_HANDLERS", dict(customer_merge._HANDLERS))
    return customer_merge._HANDLERS


def test_events_registers_its_rollups_and_signals_in_ready():
    handled = {model for h in customer_merge.customer_merge_handlers() for model in h.models}
    assert {MetricRollup, MetricUniqueValue, UsageSignal} <= handled


@pytest.mark.django_db(transaction=True)
def test_a_registered_handler_runs_inside_the_merge_transaction(app, handlers):
    """Given two placeholders, when identify merges them, the handler runs before the placeholder is
    deleted, inside the merge's transaction: what it wrote is rolled back with the merge when it fails."""
    ingest(app, "acme.myshopify.com", "by-domain")
    ingest(app, "555", "by-id")
    placeholders = set(Customer.objects.filter(app=app).values_list("pk", flat=True))
    calls = []

    def merge(*, keep, remove):
        calls.append(
            (keep.pk, remove.pk, connection.in_atomic_block, Customer.objects.filter(pk=remove.pk).exists())
        )
        Customer.objects.filter(pk=keep.pk).update(name="written by the handler")
        raise RuntimeError("handler failed")

    customer_merge_register(key="test", models=(), merge=merge)
    with pytest.raises(RuntimeError, match="handler failed"):
        customer_identify(app=app, platform_id="555", myshopify_domain="acme.myshopify.com", name="Acme")

    [(keep_pk, remove_pk, in_transaction, remove_still_there)] = calls
    assert {keep_pk, remove_pk} == placeholders
    assert in_transaction and remove_still_there
    # Rolled back with the merge: both placeholders, their events, and the handler's write.
    assert set(Customer.objects.filter(app=app).values_list("pk", flat=True)) == placeholders
    assert Customer.objects.get(pk=remove_pk).usage_events.count() == 1
    assert not Customer.objects.filter(name="written by the handler").exists()


def test_the_core_leaves_a_handlers_models_alone(app, handlers):
    """Rows of a model a handler took are not moved by the core: here the handler drops them."""
    ingest(app, "acme.myshopify.com", "by-domain")
    ingest(app, "555", "by-id")
    seen = []
    customer_merge_register(
        key="test", models=(UsageEvent,), merge=lambda *, keep, remove: seen.append(remove.pk)
    )
    result = customer_identify(app=app, platform_id="555", myshopify_domain="acme.myshopify.com", name="Acme")
    assert len(seen) == 1 and seen[0] != result.customer.pk
    assert Customer.objects.filter(app=app).count() == 1
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["by-id"]
