"""Request ids (X-Request-ID) and LOG_FORMAT=json: the id is honoured or made, echoed, put on every
log record, and carried in Celery task headers into a real worker's JSON log lines."""

import io
import json
import logging
import re
import time

import pytest
from django.test import Client

from hub.celery import app as celery_app
from hub.log_redaction import SecretRedactionFilter
from hub.observability.logging_json import JsonFormatter
from hub.observability.request_id import RequestIdLogFilter, request_id_from_header
from tests.factories import AppFactory, api_key_for
from tests.processes import CeleryWorker

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "incoming",
    ["3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f", "req-42", "Root=1-5759e988-bd862e3fe1be46a994272793"],
)
def test_a_sane_incoming_request_id_is_honoured_and_echoed(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "",
        "x" * 129,  # too long
        "two words",
        "line\nbreak",
        '"quoted"',
        "hub_live_AbCdEfGhIjKl_" + "s" * 40,  # a credential: never echoed into logs
        "wk_" + "a" * 32,
        "Bearer:hub_ct_" + "t" * 30,
    ],
)
def test_an_insane_incoming_request_id_is_replaced_by_a_generated_one(incoming):
    assert GENERATED.fullmatch(request_id_from_header(incoming))


def test_without_an_incoming_id_each_request_gets_its_own(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


@pytest.fixture
def json_log():
    """Records of the root logger as LOG_FORMAT=json writes them (with the settings' filters)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretRedactionFilter())
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


def test_json_log_lines_parse_and_carry_the_request_id(client, json_log):
    client.get("/no-such-page", headers={"X-Request-ID": "req-json-1"})  # Django logs "Not Found"
    logging.getLogger("tests").warning("after the request")

    lines = json_log()
    not_found = next(line for line in lines if line["logger"] == "django.request")
    assert not_found["request_id"] == "req-json-1"
    assert not_found["level"] == "WARNING" and "Not Found: /no-such-page" in not_found["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", not_found["time"])
    after = next(line for line in lines if line["message"] == "after the request")
    assert after["request_id"] is None  # the response was closed: no id outside a request


def test_json_log_lines_carry_redacted_messages_and_tracebacks(json_log):
    secret = "hub_live_AbCdEfGhIjKl_" + "s" * 40
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        logging.getLogger("tests").exception("failed with Authorization: Bearer %s", secret)
    (line,) = json_log()
    assert secret not in json.dumps(line) and "s" * 40 not in json.dumps(line)
    assert "ValueError" in line["exc_info"] and line["level"] == "ERROR"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_a_request_into_its_task_in_a_real_worker():
    """An ingest request enqueues the rollup drain (after commit, coalesced, from a timer thread);
    the worker's JSON log line for that task carries the request's id."""
    app = AppFactory()
    _, secret = api_key_for(app)
    celery_app.control.purge()
    with CeleryWorker(name="request-id", LOG_FORMAT="json") as worker:
        api = Client(headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": secret})
        body = {"eventName": "api_call", "eventId": "e-1", "customerId": "shop-1"}
        response = api.post(
            "/v1/usage_events", json.dumps(body), content_type="application/json",
            headers={"X-Request-ID": "req-into-the-worker-7"},
        )  # fmt: skip
        assert response.status_code == 200 and response["X-Request-ID"] == "req-into-the-worker-7"

        deadline = time.monotonic() + 30
        task_lines = []
        while time.monotonic() < deadline and not task_lines:
            time.sleep(0.2)
            lines = [json.loads(x) for x in worker.output().splitlines() if x.startswith("{")]
            task_lines = [
                line
                for line in lines
                if line.get("task_name") == "events.rollups_drain" and "succeeded" in line["message"]
            ]
        assert task_lines, worker.output()[-3000:]
    assert task_lines[0]["request_id"] == "req-into-the-worker-7"
    assert task_lines[0]["task_id"] and task_lines[0]["level"] == "INFO"
    # Every log record the worker wrote is JSON (Celery prints its start-up banner without logging).
    plain = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.MULTILINE)
    assert not plain.search(worker.output()), worker.output()[-3000:]


def test_an_unknown_log_format_refuses_to_start():
    import subprocess
    import sys

    from tests.processes import ROOT, process_env

    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=process_env(LOG_FORMAT="xml"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and 'LOG_FORMAT must be "plain" or "json"' in result.stderr
