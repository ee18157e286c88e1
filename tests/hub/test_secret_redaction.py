"""Credentials never reach the logs or error pages: API keys, customer tokens, auth headers, write keys,
webhook tokens."""

import base64
import io
import json
import logging

import pytest
from django.test import Client
from django.urls import path

from hub import urls as hub_urls
from hub.log_redaction import REDACTED, redact
from hub.services.customers import customer_identify
from integrations.sources.services import source_cache_clear, source_create

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

careless = logging.getLogger("tests.careless_view")


def careless_view(request):
    """What a careless change could do: log the credentials, then fail with one in the message."""
    careless.info("headers %s", dict(request.headers))
    careless.warning("META %r", {k: v for k, v in request.META.items() if k.startswith("HTTP_")})
    credential = request.headers.get("X-Mantle-App-Api-Key") or request.headers.get("Authorization")
    raise RuntimeError(f"could not use {credential}")


urlpatterns = [path("careless/", careless_view), *hub_urls.urlpatterns]

WRITE_KEY = "wkSegmentWriteKey0123456789abcdef"
BAD_KEY = "hub_live_AAAAAAAAAAAA_thisIsNotARealSecretButLooksLikeOne0"


@pytest.fixture
def log_output():
    """What LOGGING's own console handler writes (not pytest's capture, which has no filter)."""
    handlers = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    assert handlers, "LOGGING's console handler is not on the root logger"
    stream = io.StringIO()
    old = handlers[0].setStream(stream)
    yield stream
    handlers[0].setStream(old)


def test_requests_with_good_and_bad_credentials_and_a_500_leave_no_secret_in_logs_or_pages(
    app, api_key, log_output
):
    good_key = api_key[1]
    token = customer_identify(app=app, platform_id="shop-1").api_token
    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    app_id = str(app.public_id)
    credential_sets = [
        {"X-Mantle-App-Id": app_id, "X-Mantle-App-Api-Key": good_key},
        {"X-Mantle-App-Id": app_id, "X-Mantle-App-Api-Key": BAD_KEY},
        {"Authorization": f"Bearer {good_key}"},
        {"Authorization": f"Bearer {BAD_KEY}"},
        {"X-Mantle-App-Id": app_id, "X-Mantle-Customer-Api-Token": token},
        {"X-Mantle-App-Id": app_id, "X-Mantle-Customer-Api-Token": token + "x"},
        {"Authorization": f"Basic {basic}"},
    ]
    secrets = [good_key, BAD_KEY, token, basic, WRITE_KEY, good_key.rpartition("_")[2]]
    bodies = []
    for headers in credential_sets:
        client = Client(headers=headers, raise_request_exception=False)
        for url in ("/v1/app", "/v1/customer", "/careless/", f"/v1/nothing-here/{good_key}/{token}"):
            response = client.get(url)
            assert response.status_code < 500 or url == "/careless/"
            bodies.append(response.content.decode())
        assert client.get("/careless/").status_code == 500

    logged = log_output.getvalue()
    # The capture works and saw what the careless view and Django logged...
    assert "Internal Server Error: /careless/" in logged
    assert "RuntimeError: could not use" in logged  # the traceback, via django.request
    assert "Unauthorized: /v1/app" in logged
    assert logged.count(REDACTED) >= 3 * len(credential_sets)
    # ...and none of the credentials.
    for secret in secrets:
        assert secret not in logged, secret
        for body in bodies:
            assert secret not in body, secret


def test_webhook_tokens_and_write_keys_in_a_hook_url_never_reach_the_logs(app, log_output):
    """Django logs the path of every 4xx ("Unauthorized: /hooks/<token>"): the token is in it."""
    source_cache_clear()
    source = source_create(app=app, name="Signed hooks", shared_secret="s3cret")
    body = json.dumps({"type": "track", "event": "Signed up", "userId": "u-1"})
    client = Client(raise_request_exception=False)

    bad_signature = client.post(
        f"/hooks/{source.webhook_token}",
        body,
        content_type="application/json",
        headers={"X-Signature": "0" * 40},
    )
    misdirected = client.post(f"/hooks/{source.write_key}", body, content_type="application/json")

    assert bad_signature.status_code == 401 and misdirected.status_code == 401
    logged = log_output.getvalue()
    # The capture saw both requests...
    assert logged.count("Unauthorized: /hooks/wh_" + REDACTED) == 1
    assert logged.count("Unauthorized: /hooks/wk_" + REDACTED) == 1
    # ...and neither credential, nor its random part.
    for secret in (source.webhook_token, source.write_key):
        assert secret[3:] not in logged, secret
        assert secret[3:] not in bad_signature.content.decode() + misdirected.content.decode()


def test_one_logged_line_can_be_redacted_by_several_handlers_without_damage():
    once = redact(f"Authorization: Bearer {BAD_KEY} and X-Mantle-App-Api-Key: {BAD_KEY}")
    assert once == "Authorization: Bearer [REDACTED] and X-Mantle-App-Api-Key: [REDACTED]"
    assert redact(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key hub_live_abcdEFGH1234_s3cr3t", "key hub_live_[REDACTED]"),
        ("token hub_ct_Ab-_9z end", "token hub_ct_[REDACTED] end"),
        (
            "{'HTTP_AUTHORIZATION': 'Basic d2tfMTIzNDU2Nzg5MDo='}",
            "{'HTTP_AUTHORIZATION': 'Basic [REDACTED]'}",
        ),
        ('{"x-mantle-customer-api-token": "abc"}', '{"x-mantle-customer-api-token": "[REDACTED]"}'),
        ("sent Basic d2tfMTIzNDU2Nzg5MDo= to segment", "sent Basic [REDACTED] to segment"),
        ('{"writeKey": "wk_123"}', '{"writeKey": "[REDACTED]"}'),
        ("POST https://wk_123:@api.segment.io/v1/batch", "POST https://[REDACTED]@api.segment.io/v1/batch"),
        ("supports basic authentication", "supports basic authentication"),
        ("GET /v1/app 200", "GET /v1/app 200"),
        ("POST /hooks/wh_AbCdEfGh-1234567_ijklmnop 401", "POST /hooks/wh_[REDACTED] 401"),
        ("key=wk_0123456789abcdefXYZ_-ab", "key=wk_[REDACTED]"),
        ("the wh_token and wk_prefix columns", "the wh_token and wk_prefix columns"),
        ('"POST /hooks/guessed HTTP/1.1" 401', '"POST /hooks/[REDACTED] HTTP/1.1" 401'),
        ("/hooks/wh_x?signature=abc&n=1", "/hooks/wh_[REDACTED]?signature=[REDACTED]&n=1"),
        (
            "GET /v1/app?token=a1&key=b2&api_key=c3&client_secret=d4&password=e5&page=2 HTTP/1.1",
            "GET /v1/app?token=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&client_secret=[REDACTED]"
            "&password=[REDACTED]&page=2 HTTP/1.1",
        ),
        ("GET /search?keyword=plans&q=key HTTP/1.1", "GET /search?keyword=plans&q=key HTTP/1.1"),
        ("GET /v1/app?x-api%5Fkey=abc HTTP/1.1", "GET /v1/app?x-api%5Fkey=[REDACTED] HTTP/1.1"),
    ],
)
def test_what_is_redacted(text, expected):
    assert redact(text) == expected
