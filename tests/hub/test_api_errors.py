"""Every error under the API's prefixes is JSON in the endpoint's dialect (`{"message"}` for the
Metronome and Kable endpoints, `{"error"}` elsewhere), whoever answered it; screens keep HTML."""

import base64
import json

import psycopg
import pytest
from django.db import IntegrityError
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

# (prefix's dialect key, a POST endpoint of the prefix, an unrouted path under the prefix)
PREFIXES = {
    "v1": ("error", "/v1/identify", "/v1/nothing-here"),
    "segment": ("error", "/segment/v1/track", "/segment/v1/nothing-here"),
    "hooks": ("error", "/hooks/{token}", "/hooks/{token}/extra"),
    "metronome": ("message", "/metronome/v1/ingest", "/metronome/v1/nothing-here"),
    "kable": ("message", "/kable/api/v1/events/create", "/kable/api/v1/nothing-here"),
}


@pytest.fixture
def endpoints(app, api_key, source):
    """Per prefix: (dialect key, POST endpoint, unrouted path, credentials as headers, a valid body)."""
    write_key = base64.b64encode(f"{source.write_key}:".encode()).decode()
    headers = {
        "v1": {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]},
        "segment": {"Authorization": f"Basic {write_key}"},
        "hooks": {},
        "metronome": {"Authorization": f"Bearer {api_key[1]}"},
        "kable": {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": api_key[1]},
    }
    bodies = {
        "v1": {"platformId": "shop"},
        "segment": {"userId": "u", "event": "e"},
        "hooks": {"type": "track", "userId": "u", "event": "e"},
        "metronome": [
            {
                "transaction_id": "t",
                "customer_id": "c",
                "event_type": "e",
                "timestamp": "2024-01-01T00:00:00Z",
            }
        ],
        "kable": {"transactionId": "t", "clientId": "c", "timestamp": "2024-01-01T00:00:00Z", "data": {}},
    }
    out = {}
    for name, (key, post, unrouted) in PREFIXES.items():
        post, unrouted = (p.format(token=source.webhook_token) for p in (post, unrouted))
        out[name] = (key, post, unrouted, headers[name], bodies[name])
    return out


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def assert_error(response, status: int, key: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response.content
    body = response.json()
    assert list(body) == [key] or (key in body and isinstance(body[key], str)), body
    assert isinstance(body[key], str) and body[key]
    return body


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unrouted_paths_answer_404_in_the_dialect(client, endpoints, prefix):
    key, post, unrouted, _, _ = endpoints[prefix]
    assert_error(client.get(unrouted), 404, key)
    assert_error(client.post(post + "/"), 404, key)  # a trailing slash


def test_a_doubled_slash_and_an_encoded_slash_in_an_id_answer_json_404(client, api_client):
    assert_error(client.get("/", PATH_INFO="//v1/app"), 404, "error")
    assert_error(api_client.get("/v1/usage_metrics/a%2Fb/report"), 404, "error")
    assert_error(api_client.get("/v1/usage_metrics/a%2Fb"), 404, "error")


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_answer_405_with_allow_in_the_dialect(client, endpoints, prefix, method):
    key, post, _, headers, _ = endpoints[prefix]
    response = getattr(client, method)(post, headers=headers)
    assert_error(response, 405, key)
    assert "POST" in response["Allow"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_body_over_the_limit_answers_413_in_the_dialect(client, endpoints, prefix, settings):
    settings.HUB_MAX_BODY_BYTES = 1000
    key, post, _, headers, _ = endpoints[prefix]
    response = client.post(post, "x" * 2000, content_type="application/json", headers=headers)
    assert_error(response, 413, key)


def test_a_body_not_json_answers_415_on_v1(client, endpoints):
    key, post, _, headers, _ = endpoints["v1"]
    assert_error(client.post(post, "platformId=shop", content_type="text/plain", headers=headers), 415, key)


@pytest.mark.parametrize("prefix", PREFIXES)
@override_settings(HUB_RATE_LIMIT="1/60s", HUB_SOURCE_RATE_LIMIT="1/60s")
def test_over_the_rate_limit_answers_429_with_retry_after_in_the_dialect(
    client, endpoints, prefix, fresh_counters
):
    key, post, _, headers, body = endpoints[prefix]
    client.post(post, json.dumps(body), content_type="application/json", headers=headers)
    response = client.post(post, json.dumps(body), content_type="application/json", headers=headers)
    assert_error(response, 429, key)
    assert int(response["Retry-After"]) >= 1


def _boom(*args, **kwargs):
    raise RuntimeError("a bug")


# Something each endpoint calls once its request is read: made to fail like a bug would.
_FAILING = {
    "v1": "hub.api.customer_identify",
    "segment": "integrations.vendors.segment.source_by_write_key",
    "hooks": "integrations.vendors.segment.source_by_webhook_token",
    "metronome": "integrations.vendors.metronome.api_key_auth",
    "kable": "integrations.vendors.kable.api_key_auth",
}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_server_error_answers_500_in_the_dialect(client, endpoints, prefix, monkeypatch):
    key, post, _, headers, body = endpoints[prefix]
    monkeypatch.setattr(_FAILING[prefix], _boom)
    response = client.post(post, json.dumps(body), content_type="application/json", headers=headers)
    body = assert_error(response, 500, key)
    assert "a bug" not in body[key]


def _unique_violation(*args, **kwargs):
    error = IntegrityError("duplicate key value violates unique constraint")
    error.__cause__ = psycopg.errors.UniqueViolation()
    raise error


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_unique_violation_no_service_expected_answers_409_in_the_dialect(
    client, endpoints, prefix, monkeypatch
):
    key, post, _, headers, body = endpoints[prefix]
    monkeypatch.setattr(_FAILING[prefix], _unique_violation)
    response = client.post(post, json.dumps(body), content_type="application/json", headers=headers)
    assert_error(response, 409, key)


def test_screens_keep_html_errors(client, logged_in):
    for response in (client.get("/nothing-here/"), logged_in.get("/apps/nothing/nothing-here/")):
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


def test_a_unique_violation_no_service_expected_on_a_screen_answers_an_html_409(
    logged_in, workspace, monkeypatch
):
    monkeypatch.setattr("hub.services.accounts.app_create", _unique_violation)
    logged_in.raise_request_exception = False
    response = logged_in.post(f"/w/{workspace.slug}/apps/new/", {"name": "Shop"})
    assert response.status_code == 409
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("accept", "status", "indented"),
    [
        (None, 200, False),
        ("*/*", 200, False),
        ("application/json", 200, False),
        # Not the quick answer: DRF's negotiation, with what it does with the header.
        ("application/json; indent=2", 200, True),
        ("text/html", 406, False),
    ],
)
def test_content_negotiation_answers_as_drfs(api_client, accept, status, indented):
    """The quick answer for the usual Accept headers is the renderer DRF's negotiation picks."""
    headers = {} if accept is None else {"Accept": accept}
    event = {"eventName": "job", "customerId": "shop-1"}
    response = api_client.post("/v1/usage_events", event, content_type="application/json", headers=headers)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert ("\n" in response.content.decode()) == indented
    if status == 406:
        assert "Accept" in response.json()["error"]
