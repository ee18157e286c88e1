"""Segment's tracking API on a source: receipt into the inbox, then processing by the mappings."""

import base64
import gzip
import json

import pytest
from django.test import Client

from events.models import UsageEvent
from hub.models import Contact, Customer
from integrations.sources.models import InboxMessage
from integrations.sources.processing import inbox_process_pending
from integrations.sources.services import source_create
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db


def _auth(source) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()}


def _track(i=1, **extra):
    return {
        "type": "track",
        "event": "Report Generated",
        "userId": "user-1",
        "messageId": f"msg-{i}",
        "timestamp": "2024-03-01T12:00:00Z",
        "properties": {"shop": "shop-1.myshopify.com", "rows": i},
        **extra,
    }


def test_batch_is_committed_to_the_inbox_and_processed_into_usage_events(source):
    client = Client(headers=_auth(source))
    response = client.post(
        "/segment/v1/batch", {"batch": [_track(1), _track(2)]}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "accepted": 2}
    assert InboxMessage.objects.filter(source=source, status="pending").count() == 2
    assert not UsageEvent.objects.exists()

    assert inbox_process_pending() == 2

    events = {e.event_id: e for e in UsageEvent.objects.filter(app=source.app)}
    assert set(events) == {"msg-1", "msg-2"}
    assert events["msg-1"].event_name == "Report Generated"
    assert events["msg-1"].properties == {"shop": "shop-1.myshopify.com", "rows": 1}
    assert events["msg-1"].customer.myshopify_domain == "shop-1.myshopify.com"
    rows = list(InboxMessage.objects.filter(source=source))
    assert {r.status for r in rows} == {"processed"}
    assert {r.outcome for r in rows} == {"stored"}
    assert rows[0].matched == ["Mantle: Track → usage event"]


def test_invalid_messages_of_a_batch_are_rejected_and_the_valid_ones_kept(source):
    client = Client(headers=_auth(source))
    batch = [
        _track(1),
        {"type": "track", "userId": "u"},
        {"event": "x"},
        _track(2, userId=None, anonymousId=None),
    ]
    response = client.post("/segment/v1/batch", {"batch": batch}, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (1, "event is required for track"),
        (2, "type must be one of track, identify, group, page, screen, alias"),
        (3, "userId or anonymousId is required"),
    ]
    inbox_process_pending()
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["msg-1"]
    rejected = InboxMessage.objects.filter(status="rejected").order_by("id")
    assert [r.error for r in rejected] == [r["reason"] for r in body["rejected"]]


def test_write_key_in_the_body_and_gzip_bodies_are_accepted(source):
    body = gzip.compress(json.dumps({"batch": [_track(1)], "writeKey": source.write_key}).encode())
    response = Client().post(
        "/segment/v1/batch", body, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1


def test_single_calls_take_their_type_from_the_url(source):
    client = Client(headers=_auth(source))
    message = {"userId": "u-1", "groupId": "shop-9", "traits": {"name": "Shop Nine", "email": "a@shop9.test"}}
    assert client.post("/segment/v1/group", message, content_type="application/json").status_code == 200
    identify = {
        "userId": "u-1",
        "traits": {"email": "Ann@Shop9.test", "name": "Ann", "company": {"id": "shop-9"}},
    }
    assert client.post("/segment/v1/identify", identify, content_type="application/json").status_code == 200
    bad = client.post("/segment/v1/track", {"userId": "u-1"}, content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["error"] == "event is required for track"

    inbox_process_pending()
    customer = Customer.objects.get(app=source.app, platform_id="shop-9")
    assert (customer.name, customer.email, customer.is_placeholder) == ("Shop Nine", "a@shop9.test", False)
    assert list(Contact.objects.filter(customer=customer).values_list("email", "name")) == [
        ("ann@shop9.test", "Ann")
    ]


def test_wrong_write_key_is_401_and_another_apps_key_writes_to_its_own_source(source):
    other = source_create(app=AppFactory(), name="Other")
    response = Client(headers={"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}).post(
        "/segment/v1/batch", {"batch": [_track(1)]}, content_type="application/json"
    )
    assert response.status_code == 401
    Client(headers=_auth(other)).post(
        "/segment/v1/batch", {"batch": [_track(1)]}, content_type="application/json"
    )
    assert not InboxMessage.objects.filter(source=source).exists()
    assert InboxMessage.objects.filter(source=other).count() == 1


def test_segment_limits(source, settings):
    client = Client(headers=_auth(source))
    big = _track(1, properties={"blob": "x" * 33_000})
    response = client.post("/segment/v1/batch", {"batch": [big, _track(2)]}, content_type="application/json")
    assert response.json()["accepted"] == 1
    assert "at most 32768" in response.json()["rejected"][0]["reason"]
    too_big = {"batch": [_track(i, properties={"b": "y" * 20_000}) for i in range(30)]}
    assert client.post("/segment/v1/batch", too_big, content_type="application/json").status_code == 400
    settings.HUB_SOURCE_BATCH_MAX_MESSAGES = 3
    response = client.post(
        "/segment/v1/batch", {"batch": [_track(i) for i in range(5)]}, content_type="application/json"
    )
    # Over the message count: refused whole, like a batch over the size, and nothing kept.
    assert response.status_code == 400
    assert response.json() == {"error": "A batch holds at most 3 messages; this one has 5."}
    assert InboxMessage.objects.filter(source=source).count() == 2  # the first request's two


def test_unmatched_messages_are_recorded_as_such_and_reprocessing_stores_once(source):
    client = Client(headers=_auth(source))
    client.post("/segment/v1/page", {"userId": "u", "name": "Home"}, content_type="application/json")
    client.post("/segment/v1/batch", {"batch": [_track(1), _track(1)]}, content_type="application/json")
    inbox_process_pending()
    rows = list(InboxMessage.objects.order_by("id"))
    assert [r.outcome for r in rows] == ["unmatched", "stored", "duplicate"]
    assert UsageEvent.objects.count() == 1


def test_two_usage_event_mappings_matching_one_message_make_two_events(source):
    """The later mapping's event id gets `:<mapping id>`; the message's results show each id."""
    from integrations.sources.services import mapping_save

    second = mapping_save(
        source=source,
        name="Rows as usage",
        trigger='type = "track"',
        action="usage_event",
        fields={"event_name": {"literal": "Rows"}, "customer_id": {"path": "$.properties.shop"}},
    )
    client = Client(headers=_auth(source))
    response = client.post("/segment/v1/batch", {"batch": [_track(1)]}, content_type="application/json")
    assert response.status_code == 200, response.content

    assert inbox_process_pending() == 1

    names = dict(UsageEvent.objects.filter(app=source.app).values_list("event_id", "event_name"))
    assert names == {"msg-1": "Report Generated", f"msg-1:{second.pk}": "Rows"}
    message = InboxMessage.objects.get(source=source)
    assert message.outcome == "stored"
    assert [r.get("event_id") for r in message.results if r["action"] == "usage_event"] == [
        "msg-1",
        f"msg-1:{second.pk}",
    ]
