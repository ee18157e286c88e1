"""Reading JSON request bodies with limits checked before parsing (shared by every ingest API)."""

from __future__ import annotations

import zlib
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
    raw = body_read(request, max_bytes=max_bytes)
    body = json_parse(raw)
    nul_refuse(raw)
    return body


def body_read(
    request: HttpRequest, *, max_bytes: int, too_large: type[HubError] = PayloadTooLarge, gunzip: bool = False
) -> bytes:
    """The body, `too_large` past `max_bytes` (from Content-Length before reading, and while
    reading); with `gunzip`, inflated when `Content-Encoding: gzip` and refused past `max_bytes`
    uncompressed too."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_bytes:
        raise too_large(f"The request body is over {max_bytes} bytes.")
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large(f"The request body is over {max_bytes} bytes.")
    if gunzip and request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, max_bytes + 1)
        except zlib.error:
            raise HubError("The body is not valid gzip.") from None
        if len(raw) > max_bytes or inflater.unconsumed_tail:
            raise too_large(f"The uncompressed request body is over {max_bytes} bytes.")
    return raw


def json_parse(
    raw: bytes,
    *,
    empty: str = "The request body is empty; send a JSON object.",
    error: type[HubError] = HubError,
) -> Any:
    """The JSON of a body, or `error` saying why not (`empty` for an empty body)."""
    if not raw.strip():
        raise error(empty)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(f"Invalid JSON: {exc}") from None


def nul_refuse(raw: bytes) -> None:
    """A 400 for a JSON body with a NUL character in a string: PostgreSQL stores none in text or
    jsonb, so it is refused here, clearly."""
    if b"\\u0000" in raw:
        raise HubError("Strings may not contain the NUL character (\\u0000).")
