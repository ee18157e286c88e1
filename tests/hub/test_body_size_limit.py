"""Request bodies over HUB_MAX_BODY_BYTES are refused with 413 before anything reads or parses them."""

import io
import json

import pytest
import requests
from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.test import Client, override_settings

from hub.middleware import BodySizeLimitMiddleware

pytestmark = pytest.mark.django_db


class ExplodingStream(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readinto = read


def wsgi_request(content_length: str) -> WSGIRequest:
    return WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v1/usage_events",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": content_length,
            "wsgi.input": ExplodingStream(),
            "wsgi.url_scheme": "http",
        }
    )


def test_defaults_and_django_limit_agree():
    assert settings.HUB_MAX_BODY_BYTES == 5 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.HUB_MAX_BODY_BYTES
    # Before CsrfViewMiddleware, which reads request.POST.
    assert settings.MIDDLEWARE.index("hub.middleware.BodySizeLimitMiddleware") < settings.MIDDLEWARE.index(
        "django.middleware.csrf.CsrfViewMiddleware"
    )


def test_declared_oversize_body_is_refused_unread_and_the_view_never_runs():
    def view(request):
        raise AssertionError("the view ran")

    response = BodySizeLimitMiddleware(view)(wsgi_request(str(10 * 1024 * 1024)))
    assert response.status_code == 413
    assert json.loads(response.content) == {
        "error": f"The request body is over {settings.HUB_MAX_BODY_BYTES} bytes."
    }


@pytest.mark.parametrize("value", ["abc", "-1", "1e9"])
def test_malformed_content_length_is_400(value):
    response = BodySizeLimitMiddleware(lambda r: None)(wsgi_request(value))
    assert response.status_code == 400
    assert "error" in json.loads(response.content)


@override_settings(HUB_MAX_BODY_BYTES=1000)
def test_api_answers_413_before_authentication_and_parsing():
    # No credentials and a non-JSON body: any later layer would have answered 401 or 415.
    response = Client().post("/v1/usage_events", data=b"x" * 1001, content_type="text/plain")
    assert response.status_code == 413
    assert response.json()["error"] == "The request body is over 1000 bytes."


@override_settings(HUB_MAX_BODY_BYTES=1000)
def test_a_body_at_the_limit_goes_through(api_client):
    body = b'{"platformId": "shop-1", "name": "' + b"n" * 100 + b'"}'
    body = body + b" " * (1000 - len(body))
    response = api_client.post("/v1/identify", data=body, content_type="application/json")
    assert response.status_code == 200, response.content


@override_settings(HUB_MAX_BODY_BYTES=1000)
def test_screens_too_refuse_before_csrf_reads_the_form():
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/login/", data="username=" + "u" * 2000, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413  # not 403 (CSRF): the form was never parsed


@override_settings(HUB_MAX_BODY_BYTES=1000)
def test_over_real_http(live_server):
    response = requests.post(
        f"{live_server.url}/v1/usage_events",
        data=b"{" + b" " * 5000 + b"}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json() == {"error": "The request body is over 1000 bytes."}
