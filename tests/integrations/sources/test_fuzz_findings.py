"""Regressions for what the fuzzer (tests/test_api_fuzz.py) found on the inbound endpoints: each was
a 500, and each is now a 2xx or a clear 400, with nothing half-stored."""

import base64
import json

import pytest
from django.test import Client

from events.models import UsageEvent
from integrations.sources.models import InboxMessage
from tests.factories import api_key_for

pytestmark = pytest.mark.django_db


def _post(url, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().post(url, raw, content_type="application/json", headers=headers)


def _kable(app):
    _, secret = api_key_for(app)
    return {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}


def _metronome(app):
    return {"Authorization": f"Bearer {api_key_for(app)[1]}"}


def _segment(source):
    return {"Authorization": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()}


def test_a_webhook_item_whose_type_is_an_object_is_rejected_not_a_server_error(source):
    """ChartMogul's format detection looked `type` up in a dict: an object `type` was a TypeError."""
    response = _post(f"/hooks/{source.webhook_token}", [{"type": {"a": 1}, "userId": "u"}])
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 0
    assert response.json()["rejected"][0]["reason"].startswith("type must be one of")


@pytest.mark.parametrize(
    ("offset", "utc"),
    [("+21:19", "2024-03-01T14:41:00+00:00"), ("-23:59", "2024-03-03T11:59:00+00:00"),
     ("+16:00", "2024-03-01T20:00:00+00:00")],
)  # fmt: skip
def test_kable_timestamps_with_offsets_postgresql_refuses_are_stored_in_utc(app, offset, utc):
    """PostgreSQL takes offsets up to ±15:59 only: a valid larger one (Python's ±23:59) was a 500."""
    body = [{"clientId": "c", "timestamp": f"2024-03-02T12:00:00{offset}", "transactionId": "k-1"}]
    response = _post("/kable/api/v1/events/create", body, **_kable(app))
    assert response.status_code == 200, response.content
    assert UsageEvent.objects.get(app=app).timestamp.isoformat() == utc


@pytest.mark.parametrize(
    "timestamp", ["2024-03-01T12:00:00+99:00", "2024-03-01T12:00:00-24:00", "0001-01-01T00:00:00+01:00"]
)
def test_metronome_timestamps_out_of_range_are_a_400(app, timestamp):
    event = {"transaction_id": "t", "customer_id": "c", "event_type": "e", "timestamp": timestamp}
    response = _post("/metronome/v1/ingest", [event], **_metronome(app))
    assert response.status_code == 400, response.content
    assert "timestamp" in json.dumps(response.json())
    assert not UsageEvent.objects.exists()


def test_usage_events_api_stores_a_large_offset_in_utc(app, api_client):
    body = {
        "eventName": "e",
        "eventId": "e-1",
        "customerId": "shop-1",
        "timestamp": "2024-03-01T23:30:00+23:30",
    }
    api_client.post("/v1/identify", {"platformId": "shop-1"}, content_type="application/json")
    response = api_client.post("/v1/usage_events", body, content_type="application/json")
    assert response.status_code < 300, response.content
    assert UsageEvent.objects.get(app=app).timestamp.isoformat() == "2024-03-01T00:00:00+00:00"


@pytest.mark.parametrize("url", ["/metronome/v1/ingest", "/kable/api/v1/events/create"])
@pytest.mark.parametrize("where", ["customer", "properties"])
def test_nul_characters_in_metronome_and_kable_bodies_are_a_clear_400(app, url, where):
    if url.startswith("/metronome"):
        event = {
            "transaction_id": "t",
            "customer_id": "c",
            "event_type": "e",
            "timestamp": "2024-03-01T12:00:00Z",
        }
        event["customer_id" if where == "customer" else "properties"] = (
            "c\x00" if where == "customer" else {"a": "\x00"}
        )
        headers = _metronome(app)
    else:
        event = {"clientId": "c", "timestamp": "2024-03-01T12:00:00Z", "transactionId": "k"}
        event["clientId" if where == "customer" else "data"] = (
            "c\x00" if where == "customer" else {"a": "\x00"}
        )
        headers = _kable(app)
    response = _post(url, [event], **headers)
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()["message"]
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("field", ["messageId", "userId", "event", "type"])
def test_a_rejected_message_with_nul_characters_is_kept_without_them(source, field):
    """The stub kept of a rejected message held the NUL PostgreSQL's jsonb refuses: a 500."""
    message = {"type": "track", "userId": "u", "event": "e", "messageId": "m", "properties": {"a": "\x00"}}
    message[field] = {"nested\x00": ["x\x00y"]} if field == "userId" else "bad\x00value"
    for response in (
        _post("/segment/v1/batch", {"batch": [message]}, **_segment(source)),
        _post(f"/hooks/{source.webhook_token}", [message]),
    ):
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == 0 and response.json()["rejected"]
    stubs = list(InboxMessage.objects.values_list("payload", flat=True))
    assert len(stubs) == 2 and "\x00" not in json.dumps(stubs)
