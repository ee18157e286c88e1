"""The webhook URL (Segment Webhooks Classic/Actions, ChartMogul payloads, X-Signature) and the
Metronome- and Kable-compatible ingest endpoints."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from events.models import UsageEvent
from hub.models import Contact, Customer
from integrations.sources.models import InboxMessage
from integrations.sources.processing import inbox_process_pending
from integrations.sources.services import source_create, source_update
from tests.factories import AppFactory, api_key_for

pytestmark = pytest.mark.django_db


def _hook(source):
    return f"/hooks/{source.webhook_token}"


def _post(url, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Client().post(url, raw, content_type="application/json", headers=headers)


def _sign(secret, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def _track(i):
    return {"type": "track", "event": "Export", "userId": "u", "messageId": f"wh-{i}",
            "properties": {"shop": "shop-7"}}  # fmt: skip


def test_segment_webhook_one_event_or_an_array(source):
    assert _post(_hook(source), _track(1), **{"User-Agent": "Segment.io/1.0"}).json() == {
        "success": True, "accepted": 1}  # fmt: skip
    assert _post(_hook(source), [_track(2), _track(3)]).json()["accepted"] == 2
    inbox_process_pending()
    assert sorted(UsageEvent.objects.values_list("event_id", flat=True)) == ["wh-1", "wh-2", "wh-3"]


def test_unknown_token_is_401_and_an_empty_object_is_a_connection_test(source):
    assert _post("/hooks/wh_nope", _track(1)).status_code == 401
    assert _post(_hook(source), {}).json() == {"success": True, "accepted": 0}
    assert not InboxMessage.objects.exists()


def test_signature_is_verified_when_the_source_has_a_secret(source):
    source_update(source=source, shared_secret="s3cret")
    raw = json.dumps(_track(1)).encode()
    assert _post(_hook(source), raw).status_code == 401
    assert _post(_hook(source), raw, **{"X-Signature": "0" * 40}).status_code == 401
    assert _post(_hook(source), raw, **{"X-Signature": _sign("s3cret", raw)}).status_code == 200
    # A batch is signed over its first element (Segment's Webhook (Actions)).
    first = json.dumps(_track(2), separators=(",", ":")).encode()
    batch = b"[" + first + b"," + json.dumps(_track(3), separators=(",", ":")).encode() + b"]"
    assert _post(_hook(source), batch, **{"X-Signature": _sign("s3cret", first)}).json()["accepted"] == 2
    assert _post(_hook(source), batch, **{"X-Signature": _sign("other", first)}).status_code == 401


def test_chartmogul_send_contact_and_send_customer(source):
    customer = {"type": "Send Customer", "message_id": "cm-1", "timestamp": "2024-03-01T00:00:00Z",
                "user_id": "u-1", "group_id": "acme", "name": "Acme", "email": "billing@acme.test",
                "website": "https://acme.test", "address": {"city": "Paris", "country": "FR"}}  # fmt: skip
    contact = {"type": "Send Contact", "message_id": "cm-2", "timestamp": "2024-03-01T00:00:00Z",
               "user_id": "u-1", "email": "Joe@Acme.test", "first_name": "Joe", "last_name": "Doe",
               "title": "CFO", "company": {"id": "acme", "name": "Acme"}}  # fmt: skip
    assert _post(_hook(source), customer).json()["accepted"] == 1
    assert _post(_hook(source), contact).json()["accepted"] == 1
    inbox_process_pending()
    acme = Customer.objects.get(app=source.app, platform_id="acme")
    assert (acme.name, acme.email) == ("Acme", "billing@acme.test")
    assert acme.custom_fields == {
        "website": "https://acme.test",
        "address": {"city": "Paris", "country": "FR"},
    }
    assert list(Contact.objects.filter(customer=acme).values_list("email", "name", "label")) == [
        ("joe@acme.test", "Joe Doe", "CFO")
    ]
    rows = InboxMessage.objects.order_by("id")
    assert [(r.format, r.type, r.event, r.outcome) for r in rows] == [
        ("chartmogul", "group", "Send Customer", "stored"),
        ("chartmogul", "identify", "Send Contact", "stored"),
    ]


def test_a_contact_without_a_company_fails_with_the_reason(source):
    _post(_hook(source), {"type": "Send Contact", "message_id": "cm-3", "user_id": "u", "email": "x@y.z"})
    inbox_process_pending()
    row = InboxMessage.objects.get()
    assert row.outcome == "failed"
    assert "customer_id is required" in row.error


# --- Metronome ----------------------------------------------------------------------------------


def _metronome(app):
    return {"Authorization": f"Bearer {api_key_for(app)[1]}"}


def _m_event(i, **extra):
    return {"transaction_id": f"t-{i}", "customer_id": "shop-1", "event_type": "cpu_used",
            "timestamp": "2024-03-01T12:00:00Z", "properties": {"cpu": i}, **extra}  # fmt: skip


def test_metronome_ingest_stores_and_dedupes_by_transaction_id(app):
    headers = _metronome(app)
    response = _post("/metronome/v1/ingest", [_m_event(1), _m_event(2)], **headers)
    assert response.status_code == 200 and response.content == b""
    assert _post("/metronome/v1/ingest", [_m_event(1)], **headers).status_code == 200
    rows = UsageEvent.objects.filter(app=app).order_by("event_id")
    assert [(e.event_id, e.event_name, e.properties) for e in rows] == [
        ("t-1", "cpu_used", {"cpu": 1}), ("t-2", "cpu_used", {"cpu": 2})]  # fmt: skip
    assert rows[0].timestamp == datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ([], 400, "empty"),
        ([_m_event(i) for i in range(101)], 400, "between 1 and 100"),
        ({"transaction_id": "x"}, 400, "JSON array"),
        ([_m_event(1, timestamp=1709294400000)], 400, "RFC 3339"),
        ([_m_event(1, timestamp="2024-03-01")], 400, "RFC 3339"),
        ([_m_event(1, transaction_id="")], 400, "transaction_id is required"),
        ([_m_event(1, timestamp=(datetime.now(UTC) + timedelta(hours=25)).isoformat())], 400, "24 hours"),
    ],
)
def test_metronome_ingest_refuses_what_metronome_refuses(app, body, status, fragment):
    response = _post("/metronome/v1/ingest", body, **_metronome(app))
    assert response.status_code == status
    assert fragment in json.dumps(response.json())
    assert not UsageEvent.objects.exists()


def test_metronome_ingest_needs_a_bearer_api_key(app):
    assert _post("/metronome/v1/ingest", [_m_event(1)]).status_code == 401
    response = _post("/metronome/v1/ingest", [_m_event(1)], Authorization="Bearer hub_live_nope_x")
    assert response.status_code == 401 and "message" in response.json()


# --- Kable --------------------------------------------------------------------------------------


def test_kable_events_create(app):
    _, secret = api_key_for(app)
    headers = {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}
    body = [{"clientId": "shop-3", "timestamp": "2022-01-09T09:32:01Z", "transactionId": "k-1",
             "data": {"kableX": "important", "objectCount": 12}}]  # fmt: skip
    response = _post("/kable/api/v1/events/create", body, **headers)
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert _post("/kable/api/v1/events/create", body, **headers).json()["duplicates"] == 1
    event = UsageEvent.objects.get(app=app)
    assert (event.event_id, event.event_name, event.properties["objectCount"]) == ("k-1", "kable_event", 12)
    assert event.customer.platform_id == "shop-3"


def test_kable_refuses_another_apps_id_and_bad_events(app):
    _, secret = api_key_for(app)
    other = AppFactory()
    body = [{"clientId": "c", "timestamp": "2022-01-09T09:32:01Z", "transactionId": "k-1"}]
    wrong = {"KABLE-CLIENT-ID": str(other.public_id), "KABLE-CLIENT-SECRET": secret}
    assert _post("/kable/api/v1/events/create", body, **wrong).status_code == 401
    headers = {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}
    bad = [{"clientId": "c", "timestamp": "yesterday", "transactionId": "k-1"}]
    assert _post("/kable/api/v1/events/create", bad, **headers).status_code == 400
    assert not UsageEvent.objects.exists()


def test_a_source_of_another_app_never_receives_these_messages(source):
    other = source_create(app=AppFactory(), name="Other")
    _post(_hook(other), _track(1))
    inbox_process_pending()
    assert not UsageEvent.objects.filter(app=source.app).exists()
    assert UsageEvent.objects.filter(app=other.app).count() == 1
