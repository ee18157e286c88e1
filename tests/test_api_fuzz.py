"""Fuzzing the API from its OpenAPI schema (schemathesis): no 5xx, and answers the schema describes.

The schema is the one /api/schema/ serves, so every operation in it is fuzzed, new endpoints
included: the Mantle-compatible /v1/ API and the inbound endpoints (Segment's tracking API, the
webhook URL, Metronome's and Kable's ingest), each with real credentials so requests get past
authentication. CI runs a short derandomized pass (HUB_FUZZ_EXAMPLES per operation, default 25);
`make fuzz-long` runs a long random one. See docs/security.md.
"""

import base64
import fnmatch
import os
import re
import warnings
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import got_request_exception, request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "25"))
LONG_RUN = os.environ.get("HUB_FUZZ_LONG") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Headers schemathesis would fill with random values from the security schemes: the real key is sent.
CREDENTIAL_HEADERS = {
    "authorization",
    "x-mantle-app-id",
    "x-mantle-app-api-key",
    "x-mantle-customer-api-token",
    "kable-client-id",
    "kable-client-secret",
}
# Answers the API gives but its schema does not describe yet: (method, path, status) -> owner's fix.
# Each entry is a bug in an endpoint's @extend_schema; remove it with the fix. Never add 5xx here.
KNOWN_UNDOCUMENTED: dict[tuple[str, str, int], str] = {}
# Server errors found and reported, not yet fixed: ("METHOD /path" pattern, text of the exception)
# -> the bug. Matched on the exception itself, so any other 5xx still fails. Remove with the fix.
KNOWN_SERVER_ERRORS: dict[tuple[str, str], str] = {}


class KnownServerError(UserWarning):
    """A reported server error the fuzzer met again."""


@contextmanager
def transaction_kept_open():
    """Django closes the database connection after each WSGI request; the test's transaction needs it."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


application = get_wsgi_application()  # the production WSGI app: every middleware, the real auth
with transaction_kept_open():
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def credentials(app, api_key, settings):
    """Real credentials for each kind of operation: path prefix -> (headers, path parameters)."""
    from integrations.sources.services import source_cache_clear, source_create

    settings.HUB_RATE_LIMIT = "off"  # the fuzzer's volume is not abuse; 429s would only hide answers
    settings.HUB_SOURCE_RATE_LIMIT = "off"
    source_cache_clear()
    with transaction_kept_open():
        source = source_create(app=app, name="Fuzzed source")  # no shared secret: bodies get parsed
        write_key = base64.b64encode(f"{source.write_key}:".encode()).decode()
        yield {
            "/v1/": ({"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]}, {}),
            "/segment/": ({"Authorization": f"Basic {write_key}"}, {}),
            "/hooks/": ({}, {"token": source.webhook_token}),
            "/metronome/": ({"Authorization": f"Bearer {api_key[1]}"}, {}),
            "/kable/": ({"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": api_key[1]}, {}),
        }
    source_cache_clear()


@pytest.fixture
def server_errors():
    """Exceptions behind 500 answers, to tell a reported bug from a new one."""
    seen: list[BaseException] = []

    def record(sender, request=None, **kwargs):
        import sys

        seen.append(sys.exc_info()[1])

    got_request_exception.connect(record, weak=False)
    yield seen
    got_request_exception.disconnect(record)


def _known_server_error(case, errors) -> str | None:
    operation = f"{case.method.upper()} {case.path}"
    for (pattern, text), bug in KNOWN_SERVER_ERRORS.items():
        if fnmatch.fnmatchcase(operation, pattern) and errors and text in str(errors[-1]):
            return bug
    return None


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_conform_to_the_schema(case, credentials, server_errors):
    found = [v for prefix, v in credentials.items() if case.path.startswith(prefix)]
    if not found:
        pytest.fail(f"{case.path}: no credentials for it; add its kind to the `credentials` fixture")
    headers, path_parameters = found[0]
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}
    if path_parameters:
        case.path_parameters = {**(case.path_parameters or {}), **path_parameters}
    server_errors.clear()
    response = case.call(headers=headers)
    if response.status_code >= 500 and (bug := _known_server_error(case, server_errors)):
        warnings.warn(KnownServerError(bug), stacklevel=1)
        return
    checks = CHECKS
    if (case.method.upper(), case.path, response.status_code) in KNOWN_UNDOCUMENTED:
        checks = [not_a_server_error, content_type_conformance]
    case.validate_response(response, checks=checks)


def test_the_schema_describes_the_api_and_its_credentials():
    """What the fuzzer relies on: every /v1/ operation in the schema, with the hub's security schemes."""
    document = schema.raw_schema
    schemes = document["components"]["securitySchemes"]
    assert schemes["AppApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Mantle-App-Api-Key", "description": "An API key."
    }  # fmt: skip
    assert schemes["AppId"]["name"] == "X-Mantle-App-Id"
    assert schemes["BearerApiKey"]["scheme"] == "bearer"
    assert schemes["CustomerApiToken"]["name"] == "X-Mantle-Customer-Api-Token"
    assert schemes["SegmentWriteKey"]["scheme"] == "basic"
    assert {schemes["KableClientId"]["name"], schemes["KableClientSecret"]["name"]} == {
        "KABLE-CLIENT-ID",
        "KABLE-CLIENT-SECRET",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"401", "429"} <= set(operation["responses"]), f"{method} {path}"
            if path.startswith("/v1/"):
                assert {"AppId": [], "AppApiKey": []} in operation["security"], f"{method} {path}"
    paths = document["paths"]
    assert paths["/segment/v1/track"]["post"]["security"] == [{"SegmentWriteKey": []}]
    assert paths["/metronome/v1/ingest"]["post"]["security"] == [{"BearerApiKey": []}]
    assert paths["/kable/api/v1/events/create"]["post"]["security"] == [
        {"KableClientId": [], "KableClientSecret": []}
    ]
    assert paths["/hooks/{token}"]["post"]["parameters"][0]["name"] == "token"  # the URL is the credential


def test_every_api_route_of_the_url_configuration_is_in_the_schema():
    """The /v1/ API and the inbound endpoints alike: a route missing from the schema is not fuzzed."""
    from tests.test_tenant_isolation import ALL_ROUTES

    api = [r for r in ALL_ROUTES if r.is_api or r.is_inbound]
    as_openapi = {"/" + re.sub(r"<(?:[^>:]+:)?(\w+)>", r"{\1}", r.route) for r in api}
    assert {"/segment/v1/batch", "/hooks/{token}", "/metronome/v1/ingest", "/v1/usage_events"} <= as_openapi
    missing = as_openapi - set(schema.raw_schema["paths"])
    assert not missing, f"API routes the schema does not describe (so the fuzzer skips them): {missing}"
