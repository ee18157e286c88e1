"""Strict local stand-ins of the destinations, written from their public docs (REFERENCE sections
2 and 8): Metronome's `/v1/ingest`, Kable's `/api/v1/events/create` and a Standard Webhooks
receiver that verifies every request with the spec's own `standardwebhooks` library.

Each records every accepted item (duplicates included) and every violation of the vendor's rules,
and can be told to answer the next requests with a status (a scripted fault)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.standin_http import whole_body


def _rfc3339(value) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class StandIn:
    """A loopback HTTP server; subclasses check a request and return (status, body, items)."""

    path = "/"

    def __init__(self):
        self.items: list[dict] = []
        self.requests: list[tuple[dict, bytes]] = []  # (headers, body) of every request
        self.violations: list[str] = []
        self.faults: list[tuple[int, dict]] = []
        self.delay = 0.0  # seconds each answer waits (a slow destination)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = whole_body(self)
                if raw is None:
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                with standin.lock:
                    standin.requests.append((headers, raw))
                    fault = standin.faults.pop(0) if standin.faults else None
                if standin.delay:
                    time.sleep(standin.delay)
                if fault:
                    status, body = fault
                else:
                    if standin.path is None and standin.check_path(self.path):
                        status, body, items = standin.check(headers, raw, self.path)
                    elif self.path != standin.path:
                        status, body, items = 404, {"message": "not found"}, []
                    else:
                        status, body, items = standin.check(headers, raw)
                    if status < 300:
                        with standin.lock:
                            standin.items.extend(items)
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def fail_next(self, count: int, status: int, body: dict | None = None) -> None:
        with self.lock:
            self.faults += [(status, body or {"message": "scripted fault"})] * count

    def refuse(self, why: str, status: int = 400):
        with self.lock:
            self.violations.append(why)
        return status, {"message": why}, []

    def wait_items(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= count:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{len(self.items)} of {count} items arrived; violations: {self.violations[:5]}")

    def counts(self, key: str) -> Counter:
        with self.lock:
            return Counter(str(i.get(key)) for i in self.items)


class MetronomeStandIn(StandIn):
    """`POST /v1/ingest`: Bearer token; a JSON array of 1 to 100 events with a string
    transaction_id, customer_id and event_type, an RFC 3339 timestamp at most 24 h ahead and
    (seed 001) a properties object; 200 with an empty body; errors `{"message": ...}`."""

    path = "/v1/ingest"

    def __init__(self, token: str = "mt_test_token"):
        super().__init__()
        self.token = token

    def check(self, headers: dict, raw: bytes):
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}, []
        try:
            events = json.loads(raw)
        except ValueError:
            return self.refuse("the body is not JSON")
        if not isinstance(events, list) or not 1 <= len(events) <= 100:
            return self.refuse("the body must be an array of 1 to 100 events")
        for e in events:
            if not isinstance(e, dict):
                return self.refuse("an event must be an object")
            for name in ("transaction_id", "customer_id", "event_type"):
                if not isinstance(e.get(name), str) or not e[name]:
                    return self.refuse(f"{name} must be a non-empty string")
            if not _rfc3339(e.get("timestamp")):
                return self.refuse("timestamp must be RFC 3339")
            if not isinstance(e.get("properties"), dict):
                return self.refuse("properties must be an object")
            extra = set(e) - {"transaction_id", "customer_id", "timestamp", "event_type", "properties"}
            if extra:
                return self.refuse(f"unknown fields {sorted(extra)}")
        return 200, None, events


class KableStandIn(StandIn):
    """`POST /api/v1/events/create`: KABLE-CLIENT-ID and KABLE-CLIENT-SECRET; a JSON array of
    `{clientId, timestamp, transactionId, data}` (at most 500)."""

    path = "/api/v1/events/create"

    def __init__(self, client_id: str = "kci_test", secret: str = "kcs_test"):
        super().__init__()
        self.client_id, self.secret = client_id, secret

    def check(self, headers: dict, raw: bytes):
        if (
            headers.get("kable-client-id") != self.client_id
            or headers.get("kable-client-secret") != self.secret
        ):
            return 401, {"message": "Unauthorized"}, []
        try:
            events = json.loads(raw)
        except ValueError:
            return self.refuse("the body is not JSON")
        if not isinstance(events, list) or not 1 <= len(events) <= 500:
            return self.refuse("the body must be an array of 1 to 500 events")
        for e in events:
            if not isinstance(e, dict) or not isinstance(e.get("clientId"), str) or not e["clientId"]:
                return self.refuse("clientId must be a non-empty string")
            if not isinstance(e.get("transactionId"), str) or not _rfc3339(e.get("timestamp")):
                return self.refuse("transactionId and an RFC 3339 timestamp are required")
            if not isinstance(e.get("data"), dict):
                return self.refuse("data must be an object")
        return 200, {"message": "SUCCESS"}, events


class WebhookReceiver(StandIn):
    """A Standard Webhooks receiver: every request verified by `standardwebhooks` with the
    endpoint's secret (a bad or stale signature is 401); the body is one message or an array."""

    path = "/hooks/in"

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def check(self, headers: dict, raw: bytes):
        try:
            payload = Webhook(self.secret).verify(raw, headers)
        except WebhookVerificationError as exc:
            return self.refuse(f"signature: {exc}", status=401)
        return 200, {"ok": True}, payload if isinstance(payload, list) else [payload]


class ChartMogulStandIn(StandIn):
    """ChartMogul's CRM webhook URL (the URL is the credential: a wrong path is 404): one JSON
    object a request, `type` "Send Customer" (with user_id and group_id) or "Send Contact" (with
    user_id or anonymous_id), message_id, timestamp and sent_at."""

    path = "/hooks/chartmogul/secret-path"

    def check(self, headers: dict, raw: bytes):
        try:
            item = json.loads(raw)
        except ValueError:
            return self.refuse("the body is not JSON")
        if not isinstance(item, dict):
            return self.refuse("the body must be one object")
        for name in ("message_id", "timestamp", "sent_at"):
            if not item.get(name):
                return self.refuse(f"{name} is required")
        if not _rfc3339(item["timestamp"]):
            return self.refuse("timestamp must be RFC 3339")
        if item.get("type") == "Send Customer":
            if not item.get("user_id") or not item.get("group_id"):
                return self.refuse("a customer needs user_id and group_id")
        elif item.get("type") == "Send Contact":
            if not item.get("user_id") and not item.get("anonymous_id"):
                return self.refuse("a contact needs user_id or anonymous_id")
            if "company" in item and not item["company"].get("id"):
                return self.refuse("a company needs an id")
        else:
            return self.refuse(f"unknown type {item.get('type')!r}")
        return 200, {"ok": True}, [item]


class MantleStandIn(StandIn):
    """Mantle's App API: X-Mantle-App-Id and X-Mantle-App-Api-Key; `POST /v1/usage_events` with
    `{"events": [...]}` (each with customerId and event_name or eventName) and `POST /v1/identify`
    with platformId or myshopifyDomain."""

    path = None  # two paths

    def __init__(self, app_id: str = "app_1", key: str = "key_1"):
        super().__init__()
        self.app_id, self.key = app_id, key

    def check_path(self, path: str) -> bool:
        return path in ("/v1/usage_events", "/v1/identify")

    def check(self, headers: dict, raw: bytes, path: str = ""):
        if headers.get("x-mantle-app-id") != self.app_id or headers.get("x-mantle-app-api-key") != self.key:
            return 401, {"error": "Unauthorized"}, []
        try:
            body = json.loads(raw)
        except ValueError:
            return self.refuse("the body is not JSON")
        if path == "/v1/identify":
            if not isinstance(body, dict) or not (body.get("platformId") or body.get("myshopifyDomain")):
                return self.refuse("platformId or myshopifyDomain is required")
            return 200, {"apiToken": "token"}, [{"_path": "identify", **body}]
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return self.refuse("events must be a non-empty list")
        for e in events:
            if not e.get("customerId") or not (e.get("event_name") or e.get("eventName")):
                return self.refuse("each event needs customerId and an event name")
        return 200, {"success": True}, [{"_path": "usage_events", **e} for e in events]
