"""POST /v1/usage_events: Mantle's wire format, exactly-once storage and all-or-nothing validation."""

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings

from events.models import UsageEvent
from events.services import EventInput, usage_events_store
from hub.errors import HubError
from hub.models import Customer
from hub.services.customers import customer_identify
from tests.factories import AppFactory, api_key_for

pytestmark = pytest.mark.django_db


def post(client, body, **extra):
    return client.post("/v1/usage_events", json.dumps(body), content_type="application/json", **extra)


def test_single_event_in_mantle_shape(api_client, app):
    ts = 1709315224000
    response = post(
        api_client,
        {
            "eventName": "order_created",
            "eventId": "e-1",
            "customerId": "shop-1",
            "timestamp": ts,
            "properties": {"total": 12.5},
        },
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    event = UsageEvent.objects.get(app=app)
    assert (event.event_id, event.event_name, event.properties) == ("e-1", "order_created", {"total": 12.5})
    assert event.timestamp == datetime.fromtimestamp(ts / 1000, tz=UTC)
    assert event.customer.platform_id == "shop-1"


def test_bulk_events(api_client, app):
    events = [{"eventName": "api_call", "eventId": f"e-{i}", "customerId": "shop-1"} for i in range(50)]
    response = post(api_client, {"events": events})
    assert response.json() == {"success": True, "accepted": 50, "duplicates": 0}
    assert UsageEvent.objects.filter(app=app).count() == 50


def test_segment_mantle_destination_single_body(api_client, app):
    """What Segment's Mantle (Actions) pushEvent posts: snake_case keys and an ISO timestamp."""
    body = {
        "event_name": "Report Generated",
        "event_id": "ajs-next-1a2b3c",
        "customerId": "acme.myshopify.com",
        "timestamp": "2024-03-01T17:47:04.000Z",
        "properties": {"shop": "acme.myshopify.com", "rows": 3},
    }
    response = post(api_client, body, headers={"x-mantle-app-id": str(app.public_id)})
    assert response.status_code == 200, response.content
    event = UsageEvent.objects.get(app=app, event_id="ajs-next-1a2b3c")
    assert event.timestamp == datetime(2024, 3, 1, 17, 47, 4, tzinfo=UTC)
    assert event.customer.myshopify_domain == "acme.myshopify.com"


def test_segment_mantle_destination_batch_body(api_client, app):
    body = {
        "events": [
            {
                "eventName": "Report Generated",
                "eventId": f"m-{i}",
                "customerId": "shop-9",
                "timestamp": "2024-03-01T17:47:04.123+00:00",
                "properties": {},
            }
            for i in range(3)
        ]
    }
    assert post(api_client, body).json()["accepted"] == 3


def test_duplicates_in_batch_and_across_requests_are_stored_once(api_client, app):
    e = {"eventName": "x", "eventId": "dup", "customerId": "shop-1"}
    first = post(api_client, {"events": [e, e, {**e, "eventId": "other"}]})
    assert first.json() == {"success": True, "accepted": 2, "duplicates": 1}
    second = post(api_client, {"events": [e]})
    assert second.status_code == 200
    assert second.json() == {"success": True, "accepted": 0, "duplicates": 1}
    assert UsageEvent.objects.filter(app=app, event_id="dup").count() == 1


def test_same_event_id_in_two_apps_is_two_events(api_client, app):
    other = AppFactory()
    _, other_secret = api_key_for(other)
    e = {"eventName": "x", "eventId": "same", "customerId": "shop-1"}
    post(api_client, e)
    post(Client(headers={"Authorization": f"Bearer {other_secret}"}), e)
    assert UsageEvent.objects.filter(event_id="same").count() == 2


def test_missing_event_id_is_generated(api_client, app):
    post(api_client, {"eventName": "x", "customerId": "shop-1"})
    post(api_client, {"eventName": "x", "customerId": "shop-1"})
    ids = list(UsageEvent.objects.filter(app=app).values_list("event_id", flat=True))
    assert len(ids) == 2 and len(set(ids)) == 2 and all(ids)


def test_missing_timestamp_is_now(api_client, app):
    before = datetime.now(tz=UTC)
    post(api_client, {"eventName": "x", "customerId": "shop-1"})
    assert UsageEvent.objects.get(app=app).timestamp >= before - timedelta(seconds=1)


def test_customer_id_may_be_hub_id_token_platform_id_or_domain(api_client, app):
    result = customer_identify(app=app, platform_id="123", myshopify_domain="acme.myshopify.com")
    customer = result.customer
    refs = [str(customer.public_id), result.api_token, "123", "acme.myshopify.com", "ACME.myshopify.com"]
    for i, ref in enumerate(refs):
        assert post(api_client, {"eventName": "x", "eventId": f"r{i}", "customerId": ref}).status_code == 200
    assert set(UsageEvent.objects.filter(app=app).values_list("customer_id", flat=True)) == {customer.pk}
    assert Customer.objects.filter(app=app).count() == 1


def test_unknown_customer_gets_a_placeholder_that_identify_fills_in(api_client, app):
    post(api_client, {"eventName": "x", "eventId": "early", "customerId": "shop-77"})
    placeholder = Customer.objects.get(app=app, platform_id="shop-77")
    assert placeholder.is_placeholder
    result = customer_identify(app=app, platform_id="shop-77", name="Shop 77")
    assert result.customer.pk == placeholder.pk and result.first_identify and not result.created
    placeholder.refresh_from_db()
    assert not placeholder.is_placeholder and placeholder.name == "Shop 77"
    assert UsageEvent.objects.get(event_id="early").customer_id == placeholder.pk


def test_customer_token_may_omit_customer_id_and_cannot_name_another(app):
    mine = customer_identify(app=app, platform_id="mine")
    customer_identify(app=app, platform_id="theirs")
    client = Client(
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": mine.api_token}
    )
    assert post(client, {"eventName": "x", "eventId": "a"}).status_code == 200
    assert UsageEvent.objects.get(event_id="a").customer_id == mine.customer.pk
    assert post(client, {"eventName": "x", "eventId": "b", "customerId": "mine"}).status_code == 200
    response = post(
        client,
        {
            "events": [
                {"eventName": "x", "eventId": "c"},
                {"eventName": "x", "eventId": "d", "customerId": "theirs"},
            ]
        },
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 1, "field": "customerId", "message": "names another customer than the token's"}
    ]
    assert not UsageEvent.objects.filter(event_id__in=["c", "d"]).exists()


def test_the_store_refuses_an_event_naming_no_customer_without_a_customer_token(app):
    event = EventInput(
        event_id="a", event_name="x", customer_ref=None, timestamp=datetime.now(UTC), properties_json="{}"
    )
    with pytest.raises(HubError, match="customerId is required"):
        usage_events_store(app=app, events=[event])
    assert not UsageEvent.objects.exists()


def test_bad_customer_token_is_401(app):
    client = Client(
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": "hub_ct_nope"}
    )
    response = post(client, {"eventName": "x"})
    assert response.status_code == 401 and "error" in response.json()


# --- Bad input: each rule stores nothing -------------------------------------------------------


def assert_nothing_stored():
    assert UsageEvent.objects.count() == 0


def test_invalid_json_is_400(api_client):
    response = api_client.post("/v1/usage_events", "{nope", content_type="application/json")
    assert response.status_code == 400 and "Invalid JSON" in response.json()["error"]
    assert_nothing_stored()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(api_client, content_type):
    body = json.dumps({"eventName": "x", "customerId": "s"})
    response = api_client.post("/v1/usage_events", body, content_type=content_type)
    assert response.status_code == 415 and "error" in response.json()
    assert_nothing_stored()


def test_event_over_32kb_is_413(api_client):
    big = {"eventName": "x", "customerId": "s", "properties": {"blob": "a" * 33_000}}
    response = post(api_client, {"events": [{"eventName": "ok", "customerId": "s"}, big]})
    assert response.status_code == 413 and "Event 1" in response.json()["error"]
    assert_nothing_stored()


def test_more_than_1000_events_is_413(api_client):
    response = post(api_client, {"events": [{"eventName": "x", "customerId": "s"}] * 1001})
    assert response.status_code == 413
    assert_nothing_stored()


def test_request_over_1mb_is_413_before_parsing(api_client):
    events = [{"eventName": "x", "customerId": "s", "properties": {"p": "a" * 2000}} for _ in range(600)]
    response = post(api_client, {"events": events})
    assert response.status_code == 413
    assert_nothing_stored()


@override_settings(HUB_USAGE_EVENTS_MAX_PER_REQUEST=2, HUB_USAGE_EVENT_MAX_BYTES=200)
def test_limits_are_settings(api_client):
    assert post(api_client, {"events": [{"eventName": "x", "customerId": "s"}] * 3}).status_code == 413
    assert (
        post(api_client, {"eventName": "x", "customerId": "s", "properties": {"a": "b" * 300}}).status_code
        == 413
    )
    assert_nothing_stored()


def test_each_bad_event_is_listed_by_index_and_field(api_client):
    future = int((time.time() + 25 * 3600) * 1000)
    events = [
        {"eventName": "ok", "customerId": "s"},
        {"customerId": "s"},  # missing name
        {"eventName": "x", "customerId": "s", "properties": [1, 2]},  # non-object properties
        {"eventName": "x", "customerId": "s", "timestamp": "yesterday-ish"},  # unparseable
        {"eventName": "x", "customerId": "s", "timestamp": future},  # > 24 h ahead
        "not an object",
        {"eventName": "x"},  # no customer with an API key
        {"eventName": "", "customerId": "s", "timestamp": True},  # two errors in one event
    ]
    response = post(api_client, {"events": events})
    assert response.status_code == 400
    errors = {(e["index"], e["field"]) for e in response.json()["errors"]}
    assert errors == {
        (1, "eventName"),
        (2, "properties"),
        (3, "timestamp"),
        (4, "timestamp"),
        (5, ""),
        (6, "customerId"),
        (7, "eventName"),
        (7, "timestamp"),
    }
    assert "nothing was stored" in response.json()["error"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"events": "nope"},
        {"events": [None]},
        42,
        "string",
        None,
        {"events": [{"eventName": {"a": 1}}]},
        {"eventName": "x", "customerId": ["a"]},
        {"eventName": "x", "customerId": "s", "eventId": ""},
        {"eventName": "x" * 300, "customerId": "s"},
    ],
)
def test_odd_bodies_are_4xx_never_500(api_client, body):
    response = post(api_client, body)
    assert response.status_code in (200, 400, 413), response.content
    assert response.status_code != 200 or body == []
    assert_nothing_stored()


def test_gzip_is_not_silently_misread(api_client):
    body = gzip.compress(json.dumps({"eventName": "x", "customerId": "s"}).encode())
    response = api_client.post("/v1/usage_events", body, content_type="application/json")
    assert response.status_code == 400
    assert_nothing_stored()


def test_repeated_event_id_naming_another_customer_with_a_token_is_refused(app):
    mine = customer_identify(app=app, platform_id="mine")
    customer_identify(app=app, platform_id="theirs")
    client = Client(
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": mine.api_token}
    )
    response = post(
        client,
        {
            "events": [
                {"eventName": "x", "eventId": "same", "customerId": "mine"},
                {"eventName": "x", "eventId": "same", "customerId": "theirs"},
            ]
        },
    )
    assert response.status_code == 400
    assert_nothing_stored()
