"""Customers and contacts to destinations: a customer change leaves a snapshot (CustomerForward)
for apps whose destinations subscribe to customers, fanned out like usage events; ChartMogul gets
Send Customer / Send Contact, Mantle identify (and usage events as pushEvent, on another path)."""

import pytest

from events.services import usage_events_ingest
from hub.models import App, CustomerForward
from hub.services.customers import customer_identify
from integrations import delivery, forwarding
from integrations.destinations import destination_save
from integrations.models import Attempt, Delivery, Integration
from tests.destination_standins import ChartMogulStandIn, MantleStandIn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chartmogul_server():
    s = ChartMogulStandIn().start()
    yield s
    s.stop()


@pytest.fixture
def chartmogul(workspace, app, chartmogul_server, fast_retries):
    return destination_save(
        workspace=workspace, kind="chartmogul", name="ChartMogul",
        secret=chartmogul_server.url + ChartMogulStandIn.path, apps=[app],
    )  # fmt: skip


def forward_all():
    forwarding.customers_forward()
    forwarding.usage_events_forward()
    for integration in Integration.objects.all():
        delivery.deliveries_send(integration_id=integration.pk, budget_seconds=5)


def test_no_customer_snapshot_is_left_for_an_app_without_customer_subscriptions(app):
    customer_identify(app=app, platform_id="shop-1", name="Shop")
    assert not CustomerForward.objects.exists()
    assert not App.objects.get(pk=app.pk).forward_customers


def test_chartmogul_gets_customers_and_contacts_as_segments_action_sends_them(
    app, chartmogul, chartmogul_server
):
    result = customer_identify(
        app=app, platform_id="shop-1", name="Acme", email="billing@acme.test", platform_plan_name="Pro",
        contacts=[{"email": "Ann@Acme.test", "name": "Ann Lee", "label": "owner", "phone": "+1 555"}],
    )  # fmt: skip
    forward_all()
    forward_all()
    assert not chartmogul_server.violations
    by_type = {i["type"]: i for i in chartmogul_server.items}
    assert len(chartmogul_server.items) == 2
    company = by_type["Send Customer"]
    customer_id = str(result.customer.public_id)
    assert (company["user_id"], company["group_id"]) == (customer_id, customer_id)
    assert company["name"] == "Acme" and company["email"] == "billing@acme.test"
    contact = by_type["Send Contact"]
    assert contact["email"] == "ann@acme.test" and contact["user_id"] == "ann@acme.test"
    assert (contact["first_name"], contact["last_name"], contact["phone"]) == ("Ann", "Lee", "+1 555")
    assert contact["company"] == {"id": customer_id, "name": "Acme"}
    assert contact["message_id"].startswith("contact-") and company["message_id"].startswith("customer-")
    assert not CustomerForward.objects.exists()
    statuses = sorted(Delivery.objects.filter(integration=chartmogul).values_list("item_kind", "status"))
    assert statuses == [("contact", "delivered"), ("customer", "delivered")]


def test_the_message_is_the_customer_as_it_was_at_the_change(app, chartmogul, chartmogul_server):
    customer_identify(app=app, platform_id="shop-1", name="Before")
    customer_identify(app=app, platform_id="shop-1", name="After")
    forward_all()
    assert [i["name"] for i in sorted(chartmogul_server.items, key=lambda i: i["message_id"])] == [
        "Before",
        "After",
    ]


def test_the_chartmogul_url_is_a_secret_the_delivery_log_never_shows(workspace, app, chartmogul):
    integration = Integration.objects.get(pk=chartmogul.pk)
    assert integration.custom_host == ""
    assert integration.secret.endswith(ChartMogulStandIn.path)
    closed = destination_save(
        workspace=workspace, kind="chartmogul", name="Closed", apps=[app],
        secret="http://127.0.0.1:9/hooks/chartmogul/secret-path",
    )  # fmt: skip
    customer_identify(app=app, platform_id="shop-1", name="Acme")
    forward_all()
    attempts = list(Attempt.objects.filter(integration__in=[chartmogul, closed]).values_list("url", "error"))
    assert len(attempts) == 2 and any("connection error" in error for _, error in attempts), attempts
    for url, error in attempts:
        assert "secret-path" not in url + error, (url, error)
        assert url.endswith("/••••")


def test_mantle_gets_identify_and_usage_events_on_their_own_paths(workspace, app, fast_retries):
    server = MantleStandIn(app_id="app_9", key="key_9").start()
    try:
        mantle = destination_save(
            workspace=workspace, kind="mantle", name="Mantle", secret="key_9", url=server.url + "/v1",
            apps=[app], config={"app_id": "app_9"},
        )  # fmt: skip
        customer_identify(
            app=app, platform_id="shop-1", myshopify_domain="shop-1.myshopify.com", name="Acme",
            custom_fields={"crm": "A-1"},
        )  # fmt: skip
        usage_events_ingest(
            app=app,
            raw_events=[
                {
                    "eventName": "api_call",
                    "eventId": f"ev-{i}",
                    "customerId": "shop-1",
                    "properties": {"n": i},
                }
                for i in range(3)
            ],
        )
        forward_all()
        assert not server.violations
        paths = sorted(i["_path"] for i in server.items)
        assert paths == ["identify", "usage_events", "usage_events", "usage_events"]
        identify = next(i for i in server.items if i["_path"] == "identify")
        assert identify["platformId"] == "shop-1" and identify["customFields"] == {"crm": "A-1"}
        events = sorted(
            (i for i in server.items if i["_path"] == "usage_events"), key=lambda i: i["event_id"]
        )
        assert [(e["event_name"], e["customerId"], e["properties"]) for e in events] == [
            ("api_call", "shop-1", {"n": i}) for i in range(3)
        ]
        # One request per action: the events' request carries no identify and the other way round.
        assert len(server.requests) == 2
        assert Delivery.objects.filter(integration=mantle, status="delivered").count() == 4
    finally:
        server.stop()


def test_segment_integrations_can_take_usage_events_and_customers_once_turned_on(app, segment, standin):
    """Activities only by default; turned on, usage events go as track calls and customers as
    group calls to /v1/batch, with Segment's shapes."""
    from integrations.destinations import subscription_save

    customer = customer_identify(app=app, platform_id="shop-1", name="Acme").customer
    usage_events_ingest(
        app=app, raw_events=[{"eventName": "api_call", "eventId": "ev-0", "customerId": "shop-1"}]
    )
    forward_all()
    assert not [
        m for m in standin.messages if m["type"] in ("group", "identify") or m.get("event") == "api_call"
    ]
    for s in segment.subscriptions.all():
        subscription_save(integration=segment, subscription=s, name=s.name, action=s.action,
                          trigger=s.trigger, fields=s.fields, enabled=True)  # fmt: skip
    customer_identify(app=app, platform_id="shop-1", name="Acme 2")
    usage_events_ingest(
        app=app,
        raw_events=[
            {"eventName": "api_call", "eventId": "ev-1", "customerId": "shop-1", "properties": {"n": 1}}
        ],
    )
    forward_all()
    track = next(m for m in standin.messages if m.get("event") == "api_call")
    assert (track["type"], track["messageId"], track["userId"]) == ("track", "ev-1", str(customer.public_id))
    assert track["properties"] == {"n": 1}
    group = next(m for m in standin.messages if m["type"] == "group")
    assert group["groupId"] == str(customer.public_id) and group["traits"]["name"] == "Acme 2"
    assert not standin.violations
