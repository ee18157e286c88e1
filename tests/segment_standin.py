"""A strict local stand-in for Segment's HTTP Tracking API, on 127.0.0.1, with scripted faults.

It checks what Segment documents (REFERENCE §3): Basic auth with the write key as the user,
500 KB and 2,500 messages per batch, 32 KB per message, `type`, `messageId` (< 100 chars),
`userId` or `anonymousId`, `event` for track, an ISO-8601 `timestamp`. A violation answers 400
and is kept in `violations`, so a test can assert the hub never sent anything malformed.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.standin_http import whole_body

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_BYTES = 32 * 1024


def _batch_items(raw: bytes) -> list[bytes]:
    """The raw bytes of each element of the `batch` array of a JSON body (a small scanner)."""
    items, i = [], raw.index(b'"batch"')
    i = raw.index(b"[", i) + 1
    depth, in_str, esc, start = 0, False, False, None
    while i < len(raw):
        c = raw[i]
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:  # backslash
                esc = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x7B, 0x5B):  # { [
            if depth == 0:
                start = i
            depth += 1
        elif c in (0x7D, 0x5D):  # } ]
            if depth == 0:
                break  # the batch array closed
            depth -= 1
            if depth == 0:
                items.append(raw[start : i + 1])
        i += 1
    return items


def _hold(handler, seconds: float) -> None:
    """Keep a request unanswered for `seconds`, or until its client gives up (closes the
    connection): `hanging` then counts the requests a client is still waiting on."""
    deadline = time.monotonic() + seconds
    sock = handler.connection
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], min(left, 0.05))
        if readable:
            try:
                if not sock.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return


class SegmentStandIn:
    def __init__(self, write_key: str = "wk_test", port: int = 0):
        self.write_key = write_key
        self.port = port
        self.messages: list[dict] = []  # every accepted message, duplicates included
        self.bodies: list[bytes] = []  # every accepted request body, as received
        self.received_at: dict[str, float] = {}  # messageId -> first receipt (time.time())
        self.violations: list[str] = []
        self.requests = 0
        self.hanging = 0  # requests being held right now, and the most held at once
        self.max_hanging = 0
        self.hung = 0  # requests held in all
        self.faults: list[tuple] = []  # ("status", code, headers) | ("hang", seconds)
        self.on_request = None  # callable run after a valid request is recorded, before the answer
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # --- control ---
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SegmentStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

            def do_POST(self):
                standin._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections are refused until start() again."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def fail_next(self, count: int, status: int, headers: dict | None = None) -> None:
        with self.lock:
            self.faults += [("status", status, headers or {})] * count

    def hang_next(self, count: int, seconds: float) -> None:
        with self.lock:
            self.faults += [("hang", seconds)] * count

    def raw_messages(self) -> list[bytes]:
        """The bytes of each message of each accepted /v1/batch body, as they stood in the request."""
        with self.lock:
            bodies = list(self.bodies)
        return [m for raw in bodies for m in _batch_items(raw)]

    def message_ids(self) -> Counter:
        with self.lock:
            return Counter(m["messageId"] for m in self.messages)

    def wait_for(self, ids, timeout: float = 30) -> None:
        ids = {str(i) for i in ids}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(self.message_ids()):
                return
            time.sleep(0.05)
        missing = ids - set(self.message_ids())
        raise AssertionError(
            f"{len(missing)} of {len(ids)} messages never arrived (violations: {self.violations})"
        )

    def assert_each_once_by_id(self, ids) -> None:
        """Exactly the messages `ids` arrived, each at least once; a duplicate is only ever a resend
        of the same message (equal but for `sentAt`); nothing malformed was sent."""
        ids = {str(i) for i in ids}
        counts = self.message_ids()
        assert set(counts) == ids, f"missing {ids - set(counts)}, unexpected {set(counts) - ids}"
        by_id: dict[str, dict] = {}
        with self.lock:
            messages = list(self.messages)
        for message in messages:
            first = by_id.setdefault(message["messageId"], message)
            assert {k: v for k, v in first.items() if k != "sentAt"} == {
                k: v for k, v in message.items() if k != "sentAt"
            }, f"two different messages under messageId {message['messageId']}"
        assert not self.violations, self.violations

    # --- the server ---
    def _answer(self, handler, status: int, body: dict, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        try:
            handler.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up (timed out or was killed)

    def _handle(self, handler) -> None:
        raw = whole_body(handler)
        if raw is None:
            return
        with self.lock:
            self.requests += 1
            fault = self.faults.pop(0) if self.faults else None
        if fault and fault[0] == "hang":
            with self.lock:
                self.hanging += 1
                self.hung += 1
                self.max_hanging = max(self.max_hanging, self.hanging)
            _hold(handler, fault[1])
            with self.lock:
                self.hanging -= 1
            handler.close_connection = True
            return
        if fault and fault[0] == "status":
            self._answer(handler, fault[1], {"error": "scripted fault"}, fault[2])
            return
        expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            self._answer(handler, 401, {"error": "invalid write key"})
            return
        problem = self._check(handler.path, raw)
        if problem:
            with self.lock:
                self.violations.append(problem)
            self._answer(handler, 400, {"error": problem})
            return
        body = json.loads(raw)
        batch = body["batch"] if handler.path == "/v1/batch" else [body]
        now = time.time()
        with self.lock:
            self.bodies.append(raw)
            for m in batch:
                self.messages.append(m)
                self.received_at.setdefault(m["messageId"], now)
        if self.on_request:  # received, not yet answered: the sender cannot know it arrived
            self.on_request(self)
        self._answer(handler, 200, {"success": True})

    def _check(self, path: str, raw: bytes) -> str | None:
        if path not in ("/v1/batch", "/v1/track"):
            return f"unexpected path {path}"
        if len(raw) > MAX_BATCH_BYTES:
            return f"batch of {len(raw)} bytes is over 500 KB"
        try:
            body = json.loads(raw)
        except ValueError:
            return "invalid JSON"
        batch = body.get("batch") if path == "/v1/batch" else [body]
        if not isinstance(batch, list) or not batch:
            return "batch must be a non-empty list"
        if len(batch) > MAX_BATCH_MESSAGES:
            return f"{len(batch)} messages is over 2,500"
        for m in batch:
            size = len(json.dumps(m, separators=(",", ":")).encode())
            if size > MAX_MESSAGE_BYTES:
                return f"message of {size} bytes is over 32 KB"
            if m.get("type") not in ("track", "identify", "group"):
                return f"unexpected type {m.get('type')!r}"
            if m["type"] == "track" and not m.get("event"):
                return "track without event"
            if m["type"] == "group" and not m.get("groupId"):
                return "group without groupId"
            if not (m.get("userId") or m.get("anonymousId")):
                return "message without userId or anonymousId"
            if not m.get("messageId") or len(m["messageId"]) >= 100:
                return "messageId missing or too long"
            try:
                datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))
            except (KeyError, AttributeError, ValueError):
                return "timestamp is not ISO-8601"
        return None
