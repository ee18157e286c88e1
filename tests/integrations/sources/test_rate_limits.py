"""Rate limits of the inbound endpoints, counted in the test run's real Redis: Metronome and Kable per
API key (the budget of `/v1/`), the Segment tracking API and webhook URLs per source."""

import base64
import hashlib
import hmac
import json

import pytest
from django.test import Client, override_settings

from events.models import UsageEvent
from integrations.sources.models import InboxMessage
from integrations.sources.services import source_create, source_update
from tests.clock import rate_windows_end
from tests.factories import api_key_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_counters")]


def post(url, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().post(url, raw, content_type="application/json", headers=headers)


def assert_throttled(response, error_key: str):
    assert response.status_code == 429, response.content
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Rate limit exceeded" in response.json()[error_key]


def metronome_event(i):
    return [{"transaction_id": f"t-{i}", "customer_id": "shop-1", "event_type": "cpu_used",
             "timestamp": "2024-03-01T12:00:00Z", "properties": {"cpu": i}}]  # fmt: skip


def kable_event(i):
    return [{"clientId": "shop-1", "timestamp": "2024-03-01T12:00:00Z", "transactionId": f"k-{i}"}]


def segment_track(i):
    return {"type": "track", "event": "Export", "userId": "u", "messageId": f"m-{i}"}


def basic(write_key):
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@override_settings(HUB_RATE_LIMIT="2/60s")
def test_metronome_over_the_api_keys_budget_is_429_in_metronomes_shape_and_stores_nothing(app):
    headers = {"Authorization": f"Bearer {api_key_for(app)[1]}"}
    statuses = [post("/metronome/v1/ingest", metronome_event(i), **headers).status_code for i in range(2)]

    throttled = post("/metronome/v1/ingest", metronome_event(2), **headers)

    assert statuses == [200, 200]
    assert_throttled(throttled, "message")
    assert sorted(UsageEvent.objects.values_list("event_id", flat=True)) == ["t-0", "t-1"]


@override_settings(HUB_RATE_LIMIT="2/60s")
def test_kable_over_the_api_keys_budget_is_429_in_kables_shape(app):
    _, secret = api_key_for(app)
    headers = {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}
    statuses = [post("/kable/api/v1/events/create", kable_event(i), **headers).status_code for i in range(2)]

    throttled = post("/kable/api/v1/events/create", kable_event(2), **headers)

    assert statuses == [200, 200]
    assert_throttled(throttled, "message")
    assert UsageEvent.objects.count() == 2


@override_settings(HUB_RATE_LIMIT="3/60s")
def test_an_api_key_has_one_budget_across_v1_metronome_and_kable_and_another_key_its_own(app):
    _, secret = api_key_for(app)
    _, other_secret = api_key_for(app, name="other")
    kable = {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}

    assert Client(headers={"Authorization": f"Bearer {secret}"}).get("/v1/app").status_code == 200
    assert (
        post("/metronome/v1/ingest", metronome_event(1), Authorization=f"Bearer {secret}").status_code == 200
    )
    assert post("/kable/api/v1/events/create", kable_event(1), **kable).status_code == 200

    assert_throttled(post("/kable/api/v1/events/create", kable_event(2), **kable), "message")
    assert (
        post("/metronome/v1/ingest", metronome_event(3), Authorization=f"Bearer {other_secret}").status_code
        == 200
    )


@override_settings(HUB_SOURCE_RATE_LIMIT="2/60s")
def test_segment_tracking_api_is_limited_per_source_with_segments_error_shape(app):
    first = source_create(app=app, name="First")
    second = source_create(app=app, name="Second")
    assert (
        post("/segment/v1/track", segment_track(0), **basic("wk_not_a_key_of_any_source")).status_code == 401
    )
    statuses = [
        post("/segment/v1/track", segment_track(i), **basic(first.write_key)).status_code for i in (1, 2)
    ]

    throttled = post("/segment/v1/batch", {"batch": [segment_track(3)]}, **basic(first.write_key))
    in_body = post("/segment/v1/track", {**segment_track(4), "writeKey": first.write_key})

    assert statuses == [200, 200]
    assert_throttled(throttled, "error")
    assert_throttled(in_body, "error")
    assert post("/segment/v1/track", segment_track(5), **basic(second.write_key)).status_code == 200
    assert sorted(m.source_id for m in InboxMessage.objects.all()) == [first.pk, first.pk, second.pk]


@override_settings(HUB_SOURCE_RATE_LIMIT="2/60s")
def test_a_webhook_url_shares_its_sources_budget_and_bad_signatures_spend_none(app):
    source = source_create(app=app, name="Hooks")
    source_update(source=source, shared_secret="s3cret")
    raw = json.dumps(segment_track(1)).encode()
    signed = {"X-Signature": hmac.new(b"s3cret", raw, hashlib.sha1).hexdigest()}
    hook = f"/hooks/{source.webhook_token}"

    assert [post(hook, raw, **{"X-Signature": "0" * 40}).status_code for _ in range(3)] == [401] * 3
    assert post(hook, raw, **signed).status_code == 200
    assert post("/segment/v1/track", segment_track(2), **basic(source.write_key)).status_code == 200

    assert_throttled(post(hook, raw, **signed), "error")
    assert InboxMessage.objects.filter(source=source).count() == 2


@override_settings(HUB_SOURCE_RATE_LIMIT="1/60s")
def test_a_sources_budget_comes_back_when_the_window_ends(app, fresh_counters):
    source = source_create(app=app, name="Window")
    hook = f"/hooks/{source.webhook_token}"
    assert [post(hook, segment_track(i)).status_code for i in range(2)] == [200, 429]
    rate_windows_end(fresh_counters)
    assert post(hook, segment_track(3)).status_code == 200


@override_settings(
    HUB_SOURCE_RATE_LIMIT="1/60s", HUB_RATE_LIMIT="1/60s", HUB_RATE_LIMIT_REDIS_URL="redis://127.0.0.1:1/0"
)
def test_a_redis_outage_fails_open_on_every_inbound_endpoint(app):
    source = source_create(app=app, name="Outage")
    headers = {"Authorization": f"Bearer {api_key_for(app)[1]}"}
    assert [post("/metronome/v1/ingest", metronome_event(i), **headers).status_code for i in range(2)] == [
        200,
        200,
    ]
    assert [post(f"/hooks/{source.webhook_token}", segment_track(i)).status_code for i in range(2)] == [
        200,
        200,
    ]
