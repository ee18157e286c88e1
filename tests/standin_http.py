"""What the local stand-ins' HTTP servers share."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def whole_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request's body, or None when its sender went away before all of it arrived (a worker
    killed mid-send): then no request arrived, as a real server would see it, not a malformed one,
    and the connection is closed without an answer."""
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length)
    if len(raw) < length:
        handler.close_connection = True
        return None
    return raw
