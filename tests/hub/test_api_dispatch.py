"""hub.api_dispatch: the busiest POSTs skip DRF's request wrapping and answer exactly as DRF would."""

import pytest
from rest_framework.views import APIView

from hub.rate_limits import WindowCount
from tests.factories import api_key_for

pytestmark = pytest.mark.django_db

# `Accept` headers that take DRF's own dispatch (they need its negotiation) but choose the same
# renderer as the direct path's usual ones.
NEGOTIATED = "application/json, text/plain"
_VARYING = {"X-Request-ID"}


def _drf_dispatches(monkeypatch) -> list[str]:
    """Paths whose request DRF's dispatch wrapped."""
    seen: list[str] = []
    wrap = APIView.initialize_request

    def spy(self, request, *args, **kwargs):
        seen.append(request.path)
        return wrap(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initialize_request", spy)
    return seen


def _answer(response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in _VARYING}
    return response.status_code, headers, response.content


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # No eventId: each request stores a new event (the same answer twice).
        ("/v1/usage_events", {"eventName": "job", "customerId": "shop-1"}),
        ("/v1/identify", {"platformId": "shop-1", "name": "Shop"}),
    ],
)
def test_a_usual_post_skips_drfs_dispatch_and_answers_as_it_does(api_client, monkeypatch, path, body):
    """Same status, headers and bytes as DRF's dispatch gives for the same request."""
    wrapped = _drf_dispatches(monkeypatch)
    direct = api_client.post(path, body, content_type="application/json")
    assert wrapped == []
    through_drf = api_client.post(path, body, content_type="application/json", headers={"Accept": NEGOTIATED})
    assert wrapped == [path]
    assert direct.status_code == 200
    assert _answer(direct) == _answer(through_drf)
    assert direct["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        # A bad key: the authenticator's error, with WWW-Authenticate.
        ({"X-Mantle-App-Api-Key": "hub_live_nope_nope"}, {"eventName": "job", "customerId": "c"}, 401),
        # No credentials at all: the direct path hands the request to DRF's dispatch.
        ({}, {"eventName": "job", "customerId": "c"}, 401),
        # An invalid event: the view's error.
        (None, {"eventName": "", "customerId": "c"}, 400),
        (None, {"eventName": "job", "customerId": "c", "timestamp": "soon"}, 400),
    ],
)
def test_errors_of_a_usual_post_are_drfs(app, api_key, client, headers, body, status):
    """Each error is the answer DRF's dispatch gives to the same request, byte for byte."""
    credentials = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    sent = credentials if headers is None else ({**credentials, **headers} if headers else {})
    answers = [
        _answer(
            client.post("/v1/usage_events", body, content_type="application/json", headers={**sent, **accept})
        )
        for accept in ({}, {"Accept": NEGOTIATED})
    ]
    assert answers[0][0] == status
    assert answers[0] == answers[1]
    if status == 401:
        assert answers[0][1]["WWW-Authenticate"] == 'Bearer realm="hub"'


def test_a_throttled_usual_post_is_drfs_429(app, api_key, client, monkeypatch):
    monkeypatch.setattr(
        "hub.throttling.api_rate_limit_exceeded", lambda **kw: WindowCount(count=11, retry_after=7)
    )
    headers = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}
    body = {"eventName": "job", "customerId": "c"}
    answers = [
        client.post("/v1/usage_events", body, content_type="application/json", headers={**headers, **accept})
        for accept in ({}, {"Accept": NEGOTIATED})
    ]
    assert answers[0].status_code == 429
    assert answers[0]["Retry-After"] == "7"
    assert _answer(answers[0]) == _answer(answers[1])


def test_a_customer_token_may_not_identify(app, client):
    """Identify needs the API key: a customer token alone is refused (403), as by DRF."""
    identified = client.post(
        "/v1/identify",
        {"platformId": "shop-1"},
        content_type="application/json",
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key_for(app)[1]},
    )
    token = identified.json()["apiToken"]
    refused = client.post(
        "/v1/identify",
        {"platformId": "shop-2"},
        content_type="application/json",
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": token},
    )
    assert refused.status_code == 403
    assert refused.json() == {"error": "This endpoint needs the app's API key (X-Mantle-App-Api-Key)."}
