"""hub.api_handler: `/v1/` requests take a shorter middleware chain and answer exactly as Django's
whole chain does; every other path still takes the whole chain (sessions, CSRF, messages)."""

import json

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from hub.api_handler import API_SKIPPED_MIDDLEWARE, ApiWSGIHandler, HubWSGIHandler

pytestmark = pytest.mark.django_db

# Present on every answer of both chains (checked below), its value new each request.
_VARYING = {"x-request-id"}


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """As Django's test client does: a handler called here must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def handlers() -> dict[str, WSGIHandler]:
    return {"whole": WSGIHandler(), "api": ApiWSGIHandler(), "hub": HubWSGIHandler()}


def _call(handler, method: str, path: str, body: bytes = b"", headers=None, content_type="application/json"):
    """Status, headers (lower-cased names, the request id left out) and body of a WSGI call."""
    request = RequestFactory().generic(method, path, body, content_type=content_type, headers=headers or {})
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        names = {k.lower() for k, _ in response_headers}
        assert names >= _VARYING, f"no request id header: {sorted(names)}"
        seen["headers"] = sorted((k.lower(), v) for k, v in response_headers if k.lower() not in _VARYING)

    response = handler(request.environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return seen["status"], seen["headers"], content


def test_building_the_api_chain_leaves_the_settings_as_they_were(settings):
    before = list(settings.MIDDLEWARE)
    ApiWSGIHandler()
    assert before == settings.MIDDLEWARE
    assert set(before) >= API_SKIPPED_MIDDLEWARE


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "content_type", "status"),
    [
        # No eventId: each call stores a new event, so both chains get the same answer.
        ("POST", "/v1/usage_events", {"eventName": "job", "customerId": "shop-1"}, None, None, 200),
        (
            "POST",
            "/v1/usage_events",
            {"events": [{"eventName": "job", "customerId": "shop-1"}] * 3},
            None,
            None,
            200,
        ),
        ("POST", "/v1/identify", {"platformId": "shop-1", "name": "Shop"}, None, None, 200),
        ("POST", "/v1/usage_events", {"eventName": "", "customerId": "c"}, None, None, 400),
        ("POST", "/v1/usage_events", b"{not json", None, None, 400),
        ("POST", "/v1/usage_events", b"eventName=job", None, "application/x-www-form-urlencoded", 415),
        # Over the view's 1 MB limit, then over HUB_MAX_BODY_BYTES (the middleware's, unread).
        ("POST", "/v1/usage_events", b"x" * (2 * 1024 * 1024), None, None, 413),
        ("POST", "/v1/usage_events", b"x" * (6 * 1024 * 1024), None, None, 413),
        (
            "POST",
            "/v1/usage_events",
            {"eventName": "job", "customerId": "c"},
            {"X-Mantle-App-Api-Key": "nope"},
            None,
            401,
        ),
        ("POST", "/v1/usage_events", {"eventName": "job", "customerId": "c"}, {}, None, 401),
        ("GET", "/v1/usage_events", b"", None, None, 405),
        ("GET", "/v1/no-such-endpoint", b"", None, None, 404),
        ("OPTIONS", "/v1/usage_events", b"", None, None, 200),
    ],
)
def test_api_answers_are_byte_for_byte_those_of_the_whole_chain(
    handlers, app, api_key, method, path, body, headers, content_type, status
):
    credentials = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    sent = credentials if headers is None else ({**credentials, **headers} if headers else {})
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = content_type or "application/json"
    if path == "/v1/identify":  # the customer exists before either chain answers
        _call(handlers["whole"], method, path, raw, sent, kind)
    answers = {name: _call(handlers[name], method, path, raw, sent, kind) for name in ("whole", "api", "hub")}
    assert answers["whole"][0] == status, answers["whole"]
    assert answers["api"] == answers["whole"]
    assert answers["hub"] == answers["whole"]


def test_screens_keep_sessions_and_csrf(handlers):
    """The hub's handler sends every other path through the whole chain: a login page sets the
    CSRF cookie, and a POST without its token is refused."""
    status, headers, _content = _call(handlers["hub"], "GET", "/login/", content_type="text/html")
    assert status == 200
    assert any(name == "set-cookie" and "csrftoken=" in value for name, value in headers)
    refused = _call(
        handlers["hub"], "POST", "/login/", b"username=a&password=b",
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert refused[0] == 403


def test_the_hub_handler_sends_only_api_paths_to_the_short_chain(api_key, app):
    hub = HubWSGIHandler()
    seen = []
    short = hub.api

    def spy(environ, start_response):
        seen.append(environ["PATH_INFO"])
        return short(environ, start_response)

    hub.api = spy
    credentials = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    _call(hub, "POST", "/v1/usage_events", b'{"eventName": "job", "customerId": "c"}', credentials)
    _call(hub, "GET", "/login/", content_type="text/html")
    _call(hub, "GET", "/healthz")
    _call(hub, "GET", "/v1", content_type="text/html")
    assert seen == ["/v1/usage_events"]


def test_the_body_limit_middleware_answers_on_the_short_chain(app, api_key, monkeypatch):
    """A body over HUB_MAX_BODY_BYTES is refused before the view reads it, on both chains."""
    import hub.middleware

    seen = []
    real = hub.middleware.BodySizeLimitMiddleware.__call__

    def spy(self, request):
        response = real(self, request)
        seen.append(response.status_code)
        return response

    monkeypatch.setattr(hub.middleware.BodySizeLimitMiddleware, "__call__", spy)
    credentials = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    short = ApiWSGIHandler()
    assert _call(short, "POST", "/v1/usage_events", b"x" * (6 * 1024 * 1024), credentials)[0] == 413
    assert seen == [413]


def test_browser_cookies_get_no_cookie_answer_on_the_api(handlers, app, api_key):
    """Where the chains differ, by design: a stale session cookie or a bad CSRF cookie sent to the
    API gets no Set-Cookie (nor Vary: Cookie) from the short chain, which has no sessions or CSRF;
    the whole chain would clear or rotate them. Everything else of the answer is the same."""
    credentials = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    for cookie in ("sessionid=stale", "csrftoken=bad"):
        headers = {**credentials, "Cookie": cookie}
        whole = _call(handlers["whole"], "GET", "/v1/app", b"", headers)
        short = _call(handlers["hub"], "GET", "/v1/app", b"", headers)
        assert whole[0] == short[0] == 200
        assert any(name == "set-cookie" for name, _ in whole[1])
        assert not any(name == "set-cookie" for name, _ in short[1])
        assert short[2] == whole[2]
        cookie_free = [
            (n, v) for n, v in whole[1] if n != "set-cookie" and not (n == "vary" and v == "Cookie")
        ]
        assert short[1] == cookie_free
