"""Refusals are consistent across the inbound endpoints: a webhook URL answers one invalid message
like the tracking API (400 with the reason), a batch over the message count is refused whole
(400, nothing kept), and Metronome and Kable requests refused whole are in the debugger."""

import base64
import json

import pytest
from django.test import Client

from events.models import UsageEvent
from integrations.sources.models import InboxMessage, Source
from tests.factories import api_key_for

pytestmark = pytest.mark.django_db


def _post(url, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().post(url, raw, content_type="application/json", headers=headers)


def _basic(source):
    return {"Authorization": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()}


def _track(i, **extra):
    return {"type": "track", "event": "Export", "userId": "u", "messageId": f"m-{i}", **extra}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "track", "userId": "u", "messageId": "m-1"},  # no event
        {"type": "track", "event": "Export", "messageId": "m-1"},  # no userId or anonymousId
        {"type": "track", "event": "Export", "userId": "u", "messageId": "m" * 101},
    ],
)
def test_one_invalid_message_answers_400_with_the_reason_on_a_webhook_url_as_on_the_tracking_api(
    source, message
):
    tracking = _post("/segment/v1/track", {k: v for k, v in message.items() if k != "type"}, **_basic(source))
    webhook = _post(f"/hooks/{source.webhook_token}", message)

    assert (tracking.status_code, webhook.status_code) == (400, 400)
    assert tracking.json() == webhook.json()
    assert webhook.json()["error"] == webhook.json()["rejected"][0]["reason"]
    assert webhook.json()["accepted"] == 0
    # Both are in the debugger as rejected, with the reason.
    rows = InboxMessage.objects.filter(source=source)
    assert [(m.status, m.error) for m in rows] == [("rejected", webhook.json()["error"])] * 2


def test_a_valid_single_message_on_a_webhook_url_still_answers_200(source):
    response = _post(f"/hooks/{source.webhook_token}", _track(1))
    assert response.status_code == 200 and response.json()["accepted"] == 1


@pytest.mark.parametrize("endpoint", ["batch", "webhook"])
def test_a_batch_over_2500_messages_answers_400_whole_and_keeps_nothing(source, endpoint):
    messages = [_track(i) for i in range(2501)]
    if endpoint == "batch":
        response = _post("/segment/v1/batch", {"batch": messages}, **_basic(source))
    else:
        response = _post(f"/hooks/{source.webhook_token}", messages)

    assert response.status_code == 400
    assert response.json() == {"error": "A batch holds at most 2500 messages; this one has 2501."}
    assert not InboxMessage.objects.filter(source=source).exists()


@pytest.mark.parametrize("endpoint", ["batch", "webhook"])
def test_a_batch_of_2500_messages_is_kept_whole(source, endpoint):
    messages = [_track(i) for i in range(2500)]
    if endpoint == "batch":
        response = _post("/segment/v1/batch", {"batch": messages}, **_basic(source))
    else:
        response = _post(f"/hooks/{source.webhook_token}", messages)

    assert response.status_code == 200 and response.json()["accepted"] == 2500
    assert InboxMessage.objects.filter(source=source).count() == 2500


def _metronome(app, body):
    return _post("/metronome/v1/ingest", body, Authorization=f"Bearer {api_key_for(app)[1]}")


def _kable(app, body):
    secret = api_key_for(app)[1]
    return _post(
        "/kable/api/v1/events/create",
        body,
        **{"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret},
    )


def _m_event(i):
    return {
        "transaction_id": f"t-{i}",
        "customer_id": "shop",
        "event_type": "e",
        "timestamp": "2024-03-01T12:00:00Z",
    }


def _k_event(i):
    return {"transactionId": f"k-{i}", "clientId": "shop", "timestamp": "2024-03-01T12:00:00Z", "data": {}}


def _rejected(app, kind):
    source = Source.objects.get(app=app, kind=kind)
    return list(InboxMessage.objects.filter(source=source).order_by("id").values_list("status", "error"))


@pytest.mark.parametrize(
    ("body", "rows", "reason"),
    [
        ([_m_event(i) for i in range(101)], 100, "Send between 1 and 100 events; this request has 101."),
        ([], 1, "The array of events is empty."),
        ({"transaction_id": "t"}, 1, "The body must be a JSON array of events."),
        (b"[{not json", 1, "Invalid JSON"),
    ],
)
def test_metronome_requests_refused_whole_are_in_the_debugger_as_rejected(app, logged_in, body, rows, reason):
    response = _metronome(app, body)

    assert response.status_code == 400 and reason in response.json()["message"]
    rejected = _rejected(app, "metronome")
    assert len(rejected) == rows
    assert all(status == "rejected" and reason in error for status, error in rejected)
    assert not UsageEvent.objects.exists()
    source = Source.objects.get(app=app, kind="metronome")
    html = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/debugger/rows/").content.decode()
    assert 'data-outcome="rejected"' in html and reason.split(";")[0] in html


def test_kable_requests_over_the_event_count_are_in_the_debugger_as_rejected(app, settings):
    settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST = 5
    response = _kable(app, [_k_event(i) for i in range(6)])

    assert response.status_code == 413
    assert response.json() == {"message": "At most 5 events per request; this request has 6."}
    rejected = _rejected(app, "kable")
    assert len(rejected) == 5 and {e for _, e in rejected} == {response.json()["message"]}


def test_a_vendor_body_over_the_size_limit_is_in_the_debugger_as_one_rejected_request(app):
    response = _kable(app, [_k_event(i) | {"data": {"pad": "x" * 1000}} for i in range(1100)])

    assert response.status_code == 413
    assert _rejected(app, "kable") == [("rejected", response.json()["message"])]


def test_refused_requests_with_bad_credentials_leave_no_trace(app):
    response = _post("/metronome/v1/ingest", [_m_event(1) for _ in range(101)], Authorization="Bearer nope")
    assert response.status_code == 401
    assert not InboxMessage.objects.exists()
