"""Placeholders created by usage events before identify are merged into one customer."""

import pytest

from events.models import UsageEvent
from events.services import usage_events_ingest
from hub.errors import Conflict
from hub.models import Customer
from hub.services.customer_refs import customer_ids_resolve
from hub.services.customers import customer_identify

pytestmark = pytest.mark.django_db


def ingest(app, ref, event_id):
    return usage_events_ingest(
        app=app, raw_events=[{"eventName": "x", "eventId": event_id, "customerId": ref}]
    )


def test_placeholders_by_domain_and_by_platform_id_become_one_customer(app):
    ingest(app, "acme.myshopify.com", "by-domain")
    ingest(app, "555", "by-id")
    assert Customer.objects.filter(app=app, is_placeholder=True).count() == 2
    result = customer_identify(app=app, platform_id="555", myshopify_domain="acme.myshopify.com", name="Acme")
    assert Customer.objects.filter(app=app).count() == 1
    assert set(UsageEvent.objects.values_list("customer_id", flat=True)) == {result.customer.pk}
    # Later events by either reference land on the merged customer.
    ingest(app, "acme.myshopify.com", "after-domain")
    ingest(app, "555", "after-id")
    assert UsageEvent.objects.filter(customer=result.customer).count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_stale_cached_customer_id_is_resolved_again(app):
    """Foreign keys are checked at commit, so this needs real transactions."""
    ingest(app, "shop-1", "first")
    stale = Customer.objects.get(app=app, platform_id="shop-1")
    assert customer_ids_resolve(app=app, references=["shop-1"]) == {"shop-1": stale.pk}
    # Another process merges the placeholder away; this process's cache still has the old id.
    UsageEvent.objects.filter(customer=stale).delete()
    stale.delete()
    result = ingest(app, "shop-1", "second")
    assert result.accepted == 1
    assert UsageEvent.objects.get(event_id="second").customer.platform_id == "shop-1"


def test_two_identified_customers_cannot_share_a_domain(app):
    customer_identify(app=app, platform_id="1", myshopify_domain="a.myshopify.com")
    customer_identify(app=app, platform_id="2")
    with pytest.raises(Conflict):
        customer_identify(app=app, platform_id="2", myshopify_domain="a.myshopify.com")
