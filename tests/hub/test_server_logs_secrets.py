"""No credential in any log the hub's servers write: gunicorn (with the shipped gunicorn.conf.py,
access log on, error log at debug), Django's log in the web process and the Celery worker's log,
while every kind of credential goes through them: API keys (header, Bearer, Kable secret, query
string, path), customer tokens, source write keys (Basic auth, good and foreign), webhook tokens
(good and wrong, in the path), credential-named query parameters, a referer carrying them, and
Segment integrations' write keys (used by the worker, accepted and refused by the destination)."""

import base64
import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from hub.models import Activity
from hub.services.customers import customer_identify
from integrations.models import Attempt, Delivery
from integrations.services import integration_save
from integrations.sources.models import InboxMessage
from integrations.sources.services import source_create
from tests.factories import api_key_for
from tests.processes import BIN, ROOT, CeleryWorker, free_port, process_env
from tests.segment_standin import SegmentStandIn

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Random, and shaped like nothing the redaction knows by pattern: only where they appear saves them.
INTEGRATION_KEY = "segIntegrationKey" + secrets.token_hex(12)
REFUSED_INTEGRATION_KEY = "segRefusedKey" + secrets.token_hex(12)
FOREIGN_WRITE_KEY = "segmentClientKey" + secrets.token_hex(12)
WRONG_HOOK_TOKEN = "guessedToken" + secrets.token_hex(12)
QUERY_SECRET = "querySecret" + secrets.token_hex(12)
QUERY_KEY = "queryKey" + secrets.token_hex(12)


def _request(url: str, *, method: str = "GET", body: dict | list | None = None, headers=None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_every_credential_kind_stays_out_of_gunicorn_django_and_celery_logs(
    workspace, app, tmp_path, settings
):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    standin = SegmentStandIn(write_key=INTEGRATION_KEY).start()
    try:
        good = integration_save(
            workspace=workspace, name="Good", write_key=INTEGRATION_KEY, region="custom",
            custom_host=standin.url, apps=[app], activities=list(Activity.Kind.values),
        )  # fmt: skip
        refused = integration_save(
            workspace=workspace, name="Refused", write_key=REFUSED_INTEGRATION_KEY, region="custom",
            custom_host=standin.url, apps=[app], activities=list(Activity.Kind.values),
        )  # fmt: skip
        _, api_key = api_key_for(app)
        source = source_create(app=app, name="Segment")
        app_id = str(app.public_id)
        env = process_env(HUB_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8", HUB_RATE_LIMIT="off")
        port = free_port()
        web_out = open(tmp_path / "web.out", "wb")  # noqa: SIM115 - closed below
        web = subprocess.Popen(
            # No --config: from the checkout gunicorn reads ./gunicorn.conf.py by itself, as in production.
            [str(BIN / "gunicorn"), "hub.wsgi",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "debug",
             "--access-logfile", str(tmp_path / "access.log"), "--error-logfile", str(tmp_path / "error.log")],
            cwd=ROOT, env=env, stdout=web_out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        worker = CeleryWorker(name="logsecrets", HUB_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8").start()
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(lambda: _ready(base), "gunicorn")
            # Customers made here are activities for both integrations: the worker sends them.
            token = customer_identify(app=app, platform_id="shop-1").api_token
            ct = {"X-Mantle-App-Id": app_id, "X-Mantle-Customer-Api-Token": token}
            referer = {"Referer": f"{base}/hooks/{source.webhook_token}?token={token}&api_key={api_key}"}
            calls = [
                ("/v1/app", {"X-Mantle-App-Id": app_id, "X-Mantle-App-Api-Key": api_key}),
                ("/v1/app", {"Authorization": f"Bearer {api_key}", **referer}),
                (f"/v1/app?api_key={api_key}&key={QUERY_KEY}&secret={QUERY_SECRET}", {}),
                (f"/v1/app?token={token}&writeKey={source.write_key}", {"X-Mantle-App-Id": app_id}),
                ("/v1/customer", ct),
                (f"/v1/nothing/{api_key}/{token}/{source.write_key}", ct),
            ]
            statuses = [_request(base + path, headers=headers) for path, headers in calls]
            track = {"type": "track", "event": "Logged", "userId": "shop-1", "properties": {}}
            statuses += [
                _request(f"{base}/segment/v1/track", method="POST", body=track,
                         headers={"Authorization": _basic(source.write_key)}),
                _request(f"{base}/segment/v1/track", method="POST", body=track,
                         headers={"Authorization": _basic(FOREIGN_WRITE_KEY)}),
                _request(f"{base}/hooks/{source.webhook_token}", method="POST", body=track),
                _request(f"{base}/hooks/{source.webhook_token}?signature={QUERY_SECRET}", method="POST",
                         body=track),
                _request(f"{base}/hooks/{WRONG_HOOK_TOKEN}", method="POST", body=track),
                _request(f"{base}/metronome/v1/ingest", method="POST", body=[],
                         headers={"Authorization": f"Bearer {api_key}"}),
                _request(f"{base}/kable/api/v1/events/create", method="POST", body=[],
                         headers={"KABLE-CLIENT-ID": app_id, "KABLE-CLIENT-SECRET": api_key}),
            ]  # fmt: skip
            # The good credentials were accepted and the bad ones refused: the paths were exercised.
            assert statuses[:2] == [200, 200] and statuses[4] == 200, statuses
            assert statuses[6] == 200 and statuses[7] == 401 and statuses[8] == 200, statuses
            _wait(
                lambda: (
                    not InboxMessage.objects.filter(source=source, status="pending").exists()
                    and Delivery.objects.filter(integration=good, status="delivered").exists()
                    and Attempt.objects.filter(integration=refused).exists()
                ),
                "the worker to process the inbox and try both integrations",
            )
        finally:
            worker.stop()
            web.terminate()
            web.wait(timeout=30)
            web_out.close()
    finally:
        standin.stop()

    logs = {
        "access": (tmp_path / "access.log").read_text(),
        "gunicorn error": (tmp_path / "error.log").read_text(),
        "django (web)": (tmp_path / "web.out").read_text(),
        "celery worker": worker.output(),
    }
    # The logs were written, and saw the requests and the deliveries...
    assert logs["access"].count("\n") >= len(statuses), logs["access"]
    assert len(re.findall(r"/hooks/(?:wh_)?\[REDACTED\]", logs["access"])) == 4, logs["access"]
    assert "Unauthorized: /segment/v1/track" in logs["django (web)"], logs["django (web)"]
    assert "Booting worker" in logs["gunicorn error"]
    assert "Task integrations.activities_fanout[" in logs["celery worker"], logs["celery worker"]
    assert "Task sources.inbox_drain[" in logs["celery worker"], logs["celery worker"]
    # ...and no credential, whole or in part, nor the Basic-auth user.
    credentials = {
        "API key": api_key,
        "API key secret part": api_key.rpartition("_")[2],
        "customer token": token,
        "customer token secret part": token.removeprefix("hub_ct_"),
        "source write key": source.write_key,
        "source write key as Basic": _basic(source.write_key).split()[1],
        "foreign write key": FOREIGN_WRITE_KEY,
        "webhook token": source.webhook_token,
        "wrong webhook token": WRONG_HOOK_TOKEN,
        "query secret": QUERY_SECRET,
        "query key": QUERY_KEY,
        "integration write key": INTEGRATION_KEY,
        "integration write key as Basic": _basic(INTEGRATION_KEY).split()[1],
        "refused integration write key": REFUSED_INTEGRATION_KEY,
    }
    leaks = [
        (what, log) for what, value in credentials.items() for log, text in logs.items() if value in text
    ]
    assert leaks == [], leaks


def _ready(base: str) -> bool:
    try:
        return _request(f"{base}/healthz") == 200
    except OSError:
        return False
