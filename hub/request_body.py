"""Reading JSON request bodies with limits checked before parsing (shared by every ingest API)."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest

from .errors import HubError, PayloadTooLarge, UnsupportedMediaType


def json_body(request: HttpRequest, *, max_bytes: int) -> Any:
    """Return the parsed JSON body, or raise 415 (not JSON), 413 (over `max_bytes`), 400 (invalid).

    The size is checked from Content-Length before reading, and again while reading, so an
    oversized body is never held in memory or parsed.
    """
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_bytes:
        raise PayloadTooLarge(f"The request body is over {max_bytes} bytes.")
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is over {max_bytes} bytes.")
    if not raw.strip():
        raise HubError("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HubError(f"Invalid JSON: {exc}") from None
    if b"\\u0000" in raw:
        # PostgreSQL stores no NUL character in text or jsonb: refuse it here, clearly.
        raise HubError("Strings may not contain the NUL character (\\u0000).")
    return body
