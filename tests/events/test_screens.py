"""Usage events, Customers and Customer view screens."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import UsageEvent
from events.services import usage_events_ingest
from hub.services.customers import contact_upsert, customer_identify
from tests.factories import AppFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def make_events(app, n, *, customer="shop-1", name="api_call", same_time=False):
    events = [
        {
            "eventName": name,
            "eventId": f"{customer}-{name}-{i}",
            "customerId": customer,
            "timestamp": (T0 if same_time else T0 + timedelta(minutes=i)).isoformat(),
            "properties": {"i": i},
        }
        for i in range(n)
    ]
    usage_events_ingest(app=app, raw_events=events)


def page_ids(html):
    import re

    return re.findall(r'data-event-id="([^"]+)"', html)


def test_usage_events_newest_first_with_properties(logged_in, app):
    make_events(app, 3)
    html = logged_in.get(f"/apps/{app.public_id}/usage-events/").content.decode()
    assert page_ids(html) == ["shop-1-api_call-2", "shop-1-api_call-1", "shop-1-api_call-0"]
    assert "&quot;i&quot;: 2" in html  # properties as formatted JSON


@pytest.mark.parametrize("same_time", [False, True])
def test_keyset_pagination_walks_every_event_once_both_ways(logged_in, app, same_time):
    make_events(app, 120, same_time=same_time)
    url = f"/apps/{app.public_id}/usage-events/"
    seen, pages, query = [], [], ""
    while True:
        response = logged_in.get(url + query)
        html = response.content.decode()
        ids = page_ids(html)
        pages.append(ids)
        seen += ids
        older = response.context["page"].older
        if older is None:
            break
        query = f"?before={older.encode()}"
    assert [len(p) for p in pages] == [50, 50, 20]
    assert len(seen) == len(set(seen)) == 120
    expected = list(
        UsageEvent.objects.filter(app=app).order_by("-timestamp", "-id").values_list("event_id", flat=True)
    )
    assert seen == expected
    # Back from the last page with "Newer".
    newer = response.context["page"].newer
    back = page_ids(logged_in.get(url + f"?after={newer.encode()}").content.decode())
    assert back == pages[1]


def test_pagination_uses_no_offset_and_constant_queries(logged_in, app):
    make_events(app, 120)
    url = f"/apps/{app.public_id}/usage-events/"
    with CaptureQueriesContext(connection) as first:
        response = logged_in.get(url)
    with CaptureQueriesContext(connection) as second:
        logged_in.get(url + f"?before={response.context['page'].older.encode()}")
    assert len(first) == len(second)
    assert not any("OFFSET" in q["sql"].upper() for q in second.captured_queries)


def test_filters(logged_in, app):
    make_events(app, 5, customer="shop-1", name="api_call")
    make_events(app, 4, customer="shop-2", name="export")
    url = f"/apps/{app.public_id}/usage-events/"
    assert len(page_ids(logged_in.get(url + "?customer=shop-2").content.decode())) == 4
    assert len(page_ids(logged_in.get(url + "?event=api_call").content.decode())) == 5
    since = (T0 + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (T0 + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S")
    ids = page_ids(logged_in.get(url + f"?since={since}&until={until}").content.decode())
    assert len(ids) == 4  # minutes 2 and 3 of both customers
    html = logged_in.get(url + "?customer=nobody").content.decode()
    assert "No customer matches" in html and page_ids(html) == []
    assert logged_in.get(url + "?since=garbage&before=also-garbage").status_code == 200


def test_customers_search_and_view(logged_in, app):
    acme = customer_identify(
        app=app,
        platform_id="1",
        name="Acme",
        email="a@acme.test",
        custom_fields={"tier": "gold", "seats": 12},
    ).customer
    customer_identify(app=app, platform_id="2", name="Globex")
    contact_upsert(customer=acme, email="ops@acme.test", name="Ops")
    make_events(app, 3, customer="1")
    url = f"/apps/{app.public_id}/customers/"
    html = logged_in.get(url + "?q=acme").content.decode()
    assert "Acme" in html and "Globex" not in html
    assert "Acme" in logged_in.get(url + "?q=ops@acme").content.decode()  # by contact email
    detail = logged_in.get(f"{url}{acme.public_id}/").content.decode()
    assert "ops@acme.test" in detail
    # Custom fields read as name and value, not as raw JSON.
    assert '<dt class="mono small">tier</dt><dd>gold</dd>' in detail
    assert '<dt class="mono small">seats</dt><dd>12</dd>' in detail
    assert detail.count('class="badge badge-accent">api_call') == 3


def test_other_workspaces_get_404(app):
    make_events(app, 1)
    customer = app.customers.get()
    stranger = MembershipFactory(user=UserFactory()).user
    client = Client()
    client.force_login(stranger)
    for url in [
        f"/apps/{app.public_id}/usage-events/",
        f"/apps/{app.public_id}/customers/",
        f"/apps/{app.public_id}/customers/{customer.public_id}/",
    ]:
        assert client.get(url).status_code == 404, url


def test_customer_of_another_app_is_404_through_my_app(logged_in, app):
    other = AppFactory()
    theirs = customer_identify(app=other, platform_id="x").customer
    assert logged_in.get(f"/apps/{app.public_id}/customers/{theirs.public_id}/").status_code == 404
    assert logged_in.get(f"/apps/{app.public_id}/customers/not-a-uuid/").status_code == 404
