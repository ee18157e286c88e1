"""Segment's own Python library (segment-analytics-python), unmodified, pointed at a source."""

import pytest
from segment.analytics import Client

from events.models import UsageEvent
from hub.models import Contact, Customer
from integrations.sources.models import InboxMessage
from integrations.sources.processing import inbox_process_pending
from integrations.sources.services import source_create
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_track_identify_and_group_become_usage_events_contacts_and_customers(live_server, gzip):
    app = AppFactory()
    source = source_create(app=app, name="Segment")
    errors = []
    client = Client(
        write_key=source.write_key,
        host=f"{live_server.url}/segment",
        gzip=gzip,
        max_retries=1,
        on_error=lambda error, batch: errors.append(error),
    )
    client.group(
        "user-1",
        "shop-42",
        {"name": "Shop 42", "email": "owner@shop42.test", "plan": "Pro", "website": "https://shop42.test"},
    )
    client.identify(
        "user-1",
        {
            "email": "Ann@Shop42.test",
            "name": "Ann Lee",
            "title": "CTO",
            "company": {"id": "shop-42", "name": "Shop 42"},
        },
    )
    for i in range(3):
        client.track(
            "user-1", "Report Generated", {"shop": "shop-42", "rows": i}, message_id=f"lib-{gzip}-{i}"
        )
    client.track(
        "user-1", "Report Generated", {"shop": "shop-42", "rows": 0}, message_id=f"lib-{gzip}-0"
    )  # a retry
    client.page("user-1", "Docs", "Home")
    client.flush()
    client.join()
    assert errors == []
    assert InboxMessage.objects.filter(source=source, status="pending").count() == 7

    while inbox_process_pending():
        pass

    customer = Customer.objects.get(app=app, platform_id="shop-42")
    assert (customer.name, customer.email, customer.platform_plan_name) == (
        "Shop 42",
        "owner@shop42.test",
        "Pro",
    )
    assert customer.custom_fields == {"website": "https://shop42.test"}
    contact = Contact.objects.get(customer=customer)
    assert (contact.email, contact.name, contact.label) == ("ann@shop42.test", "Ann Lee", "CTO")
    events = UsageEvent.objects.filter(app=app).order_by("event_id")
    assert [(e.event_id, e.event_name, e.customer_id, e.properties["rows"]) for e in events] == [
        (f"lib-{gzip}-{i}", "Report Generated", customer.pk, i) for i in range(3)
    ]
    outcomes = dict(InboxMessage.objects.filter(source=source).values_list("type", "outcome").order_by("id"))
    assert outcomes == {"group": "stored", "identify": "stored", "track": "duplicate", "page": "unmatched"}
