"""Inbound HTTP endpoints, each under its own base URL so a client is simply pointed at it:

- `/segment/v1/{track,identify,group,page,screen,alias,batch}`: Segment's HTTP Tracking API
  (write key as the Basic-auth user or `writeKey` in the body; gzip bodies).
- `/hooks/<token>`: a source's webhook URL (Segment Webhooks Classic and Actions, ChartMogul's
  Send Contact / Send Customer), `X-Signature` verified when the source has a shared secret.
- `/metronome/v1/ingest` and `/kable/api/v1/events/create`: Metronome- and Kable-compatible
  usage-event ingest, checked whole (all or nothing, the vendor's error shape), then kept in the
  inbox of the app's `metronome` / `kable` source and run through its mappings inline, so the
  events are stored before the 2xx.

Plain Django views: every vendor has its own error shape, and these are hot paths.

Rate limits (hub.rate_limits, counted in Redis, 429 with `Retry-After`): Metronome and Kable
requests count against their API key's HUB_RATE_LIMIT budget, the same as on `/v1/`; Segment
calls and webhooks against their source's HUB_SOURCE_RATE_LIMIT. Credentials are checked first,
so requests with bad ones spend no budget.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import zlib
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from events.services import InvalidEvents, usage_events_validate
from hub.errors import AuthenticationError, HubError, RateLimited
from hub.models import ApiKey
from hub.rate_limits import api_rate_limit_exceeded, source_rate_limit_exceeded
from hub.services import api_key_authenticate

from .formats.segment import TYPES
from .formats.vendor import kable_event_name
from .inbox import inbox_receive
from .models import Source
from .services import (
    VendorReceipt,
    source_by_webhook_token,
    source_by_write_key,
    vendor_events_receive,
    vendor_events_refuse,
)


class BadRequest(HubError):
    pass


class TooLarge(HubError):
    status_code = 400  # Segment answers 400 to an oversized request


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def _error_json(exc: HubError, data: dict) -> HttpResponse:
    response = _json(data, status=exc.status_code)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _source_rate_limit(source: Source) -> None:
    over = source_rate_limit_exceeded(source_id=source.pk)
    if over is not None:
        raise RateLimited(over.retry_after)


def _api_key_rate_limit(api_key: ApiKey) -> None:
    over = api_rate_limit_exceeded(caller_key=f"key:{api_key.pk}")
    if over is not None:
        raise RateLimited(over.retry_after)


def _raw_body(request: HttpRequest, *, max_bytes: int, too_large: type[HubError] = TooLarge) -> bytes:
    """The body, gunzipped when `Content-Encoding: gzip`, refused past `max_bytes` either way."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_bytes:
        raise too_large(f"The request body is over {max_bytes} bytes.")
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large(f"The request body is over {max_bytes} bytes.")
    if request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, max_bytes + 1)
        except zlib.error:
            raise BadRequest("The body is not valid gzip.") from None
        if len(raw) > max_bytes or inflater.unconsumed_tail:
            raise too_large(f"The uncompressed request body is over {max_bytes} bytes.")
    return raw


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("The request body is empty; send JSON.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Invalid JSON: {exc}") from None


def _basic_user(request: HttpRequest) -> str:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("The Authorization header is not valid Basic auth.") from None
    return decoded.partition(":")[0]


def _errors_as_json(view):
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except HubError as exc:
            return _error_json(exc, exc.body())

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


# --- Segment's tracking API -----------------------------------------------------------------------


@csrf_exempt
@require_POST
@_errors_as_json
def segment_tracking(request: HttpRequest, kind: str) -> HttpResponse:
    """One Segment call (`kind` one of TYPES) or a batch; invalid messages are listed as rejected."""
    is_batch = kind == "batch"
    max_bytes = settings.HUB_SOURCE_BATCH_MAX_BYTES if is_batch else settings.HUB_SOURCE_MESSAGE_MAX_BYTES
    body = _parse(_raw_body(request, max_bytes=max_bytes))
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    write_key = _basic_user(request) or body.get("writeKey")
    source = source_by_write_key(write_key if isinstance(write_key, str) else "")
    _source_rate_limit(source)
    if is_batch:
        items = body.get("batch")
        if not isinstance(items, list):
            raise BadRequest("batch must be an array of messages.")
        _check_count(items)
        defaults = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
        receipt = inbox_receive(source=source, items=items, format_kind="segment", defaults=defaults)
        return _json(receipt.body())
    body["type"] = kind
    return _single_receipt(inbox_receive(source=source, items=[body], format_kind="segment"))


def _check_count(items: list[Any]) -> None:
    """A batch over Segment's message count is refused whole (400), like one over its size."""
    limit = settings.HUB_SOURCE_BATCH_MAX_MESSAGES
    if len(items) > limit:
        raise TooLarge(f"A batch holds at most {limit} messages; this one has {len(items)}.")


def _single_receipt(receipt) -> HttpResponse:
    """The answer to one message: 200, or 400 with the reason when it was rejected (Segment's)."""
    if receipt.rejected:
        return _json({"error": receipt.rejected[0]["reason"], **receipt.body()}, status=400)
    return _json(receipt.body())


def segment_view(kind: str):
    """The view of one Segment endpoint (`/segment/v1/<kind>`)."""
    assert kind in (*TYPES, "batch")

    def view(request: HttpRequest) -> HttpResponse:
        return segment_tracking(request, kind)

    view.__name__ = f"segment_{kind}"
    return csrf_exempt(view)


# --- Webhook URLs --------------------------------------------------------------------------------


def _first_element_text(raw: bytes) -> bytes | None:
    """The exact bytes of the first element of a JSON array body (what Segment signs for a batch)."""
    text = raw.decode("utf-8", errors="strict").lstrip()
    if not text.startswith("["):
        return None
    start = 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[start:end].encode()


def _signature_valid(secret: str, raw: bytes, signature: str) -> bool:
    signature = signature.strip().lower()
    if not signature:
        return False
    candidates = [raw]
    try:
        first = _first_element_text(raw)
    except UnicodeDecodeError:
        first = None
    if first is not None:
        candidates.append(first)
    return any(
        hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(), signature)
        for body in candidates
    )


@csrf_exempt
@require_POST
@_errors_as_json
def webhook(request: HttpRequest, token: str) -> HttpResponse:
    """A source's webhook URL: Segment events (one or an array) and ChartMogul-shaped payloads."""
    source = source_by_webhook_token(token)
    raw = _raw_body(request, max_bytes=settings.HUB_SOURCE_BATCH_MAX_BYTES)
    if source.shared_secret and not _signature_valid(
        source.shared_secret, raw, request.META.get("HTTP_X_SIGNATURE", "")
    ):
        raise AuthenticationError("Missing or invalid X-Signature.")
    _source_rate_limit(source)
    body = _parse(raw)
    if body in ({}, [{}]):
        # Connection tests (ChartMogul's, Segment's) post an empty object: nothing to keep.
        return _json({"success": True, "accepted": 0})
    if not isinstance(body, list):
        # One message answers like the tracking API's single calls: 400 when it is rejected.
        return _single_receipt(inbox_receive(source=source, items=[body]))
    _check_count(body)
    return _json(inbox_receive(source=source, items=body).body())


# --- Metronome- and Kable-compatible ingest ---------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_COMPAT_MAX_BYTES = 1024 * 1024
_METRONOME_MAX_EVENTS = 100


class _VendorError(HubError):
    """An error in the vendor's shape: `{"message": ...}`."""

    def __init__(self, message: str, status: int = 400):
        self.status_code = status
        super().__init__(message)

    def body(self) -> dict:
        return {"message": str(self)}


def _vendor_errors(view):
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except _VendorError as exc:
            return _json(exc.body(), status=exc.status_code)
        except HubError as exc:
            body = exc.body() if hasattr(exc, "errors") else {}
            return _error_json(exc, {"message": str(exc), **{k: v for k, v in body.items() if k == "errors"}})

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _compat_body(request: HttpRequest) -> Any:
    try:
        raw = _raw_body(request, max_bytes=_COMPAT_MAX_BYTES)
        body = _parse(raw)
    except BadRequest as exc:
        raise _VendorError(str(exc)) from None
    except TooLarge as exc:
        raise _VendorError(str(exc), 413) from None
    if b"\\u0000" in raw:
        # PostgreSQL stores no NUL character in text or jsonb: refuse it here, clearly (as /v1/ does).
        raise _VendorError("Strings may not contain the NUL character (\\u0000).")
    return body


def _auth(key: str, app_id: str | None = None):
    try:
        return api_key_authenticate(key=key, app_public_id=app_id)
    except AuthenticationError as exc:
        raise _VendorError(str(exc), 401) from None


def _rfc3339(value: Any, index: int, name: str) -> str:
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        raise _VendorError(f"[{index}].{name} must be an RFC 3339 timestamp (like 2024-03-01T12:00:00Z)")
    return value.strip()


def _required_text(event: dict, name: str, index: int) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _VendorError(f"[{index}].{name} is required (a non-empty string)")
    return value


@csrf_exempt
@require_POST
@_vendor_errors
def metronome_ingest(request: HttpRequest) -> HttpResponse:
    """Metronome's `POST /v1/ingest`: a JSON array of 1 to 100 events; 200 with an empty body."""
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _VendorError("Send the API key as Authorization: Bearer <key>.", 401)
    api_key = _auth(key.strip())
    _api_key_rate_limit(api_key)
    _receive_whole(request, api_key, Source.Kind.METRONOME, _metronome_items, _metronome_event)
    return HttpResponse(status=200)


def _metronome_items(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise _VendorError("The body must be a JSON array of events.")
    if not 1 <= len(body) <= _METRONOME_MAX_EVENTS:
        raise _VendorError(
            f"Send between 1 and {_METRONOME_MAX_EVENTS} events; this request has {len(body)}."
            if body
            else "The array of events is empty."
        )
    return body


def _metronome_event(event: Any, i: int) -> dict:
    """One Metronome event as the Mantle-shaped event today's conversion makes (to check it)."""
    if not isinstance(event, dict):
        raise _VendorError(f"[{i}] must be an event object")
    properties = event.get("properties", {})
    if properties is not None and not isinstance(properties, dict):
        raise _VendorError(f"[{i}].properties must be an object")
    return {
        "eventId": _required_text(event, "transaction_id", i),
        "customerId": _required_text(event, "customer_id", i),
        "eventName": _required_text(event, "event_type", i),
        "timestamp": _rfc3339(event.get("timestamp"), i, "timestamp"),
        "properties": properties or {},
    }


def _kable_event(event: Any, i: int) -> dict:
    """One Kable event as the Mantle-shaped event today's conversion makes (to check it)."""
    if not isinstance(event, dict):
        raise _VendorError(f"[{i}] must be an event object")
    data = event.get("data", {})
    if data is not None and not isinstance(data, dict):
        raise _VendorError(f"[{i}].data must be an object")
    return {
        "eventId": _required_text(event, "transactionId", i),
        "customerId": _required_text(event, "clientId", i),
        "eventName": kable_event_name(data),
        "timestamp": _rfc3339(event.get("timestamp"), i, "timestamp"),
        "properties": data or {},
    }


_UNREAD = object()


def _receive_whole(request: HttpRequest, api_key: ApiKey, kind: str, items_of, convert) -> VendorReceipt:
    """All or nothing: the body, its events (`items_of`), each event's fields, then the usage-event
    rules (a timestamp at most 24 h ahead, sizes) on the conversion the preset mapping makes; then
    the events are received. A request refused here is recorded in the source's debugger as
    rejected with the reason: its events (at most the endpoint's limit of them), or the request
    as one message when it has none to show (a body unread, not JSON, not events)."""
    body: Any = _UNREAD
    try:
        body = _compat_body(request)
        items = items_of(body)
        usage_events_validate([convert(event, i) for i, event in enumerate(items)])
    except InvalidEvents as exc:
        details = "; ".join(f"[{e.index}].{e.field}: {e.message}" for e in exc.errors)
        _refuse(api_key, kind, body, f"{exc} {details}")
        raise
    except HubError as exc:
        _refuse(api_key, kind, body, str(exc))
        raise
    return vendor_events_receive(app=api_key.app, kind=kind, items=items)


def _refuse(api_key: ApiKey, kind: str, body: Any, reason: str) -> None:
    limit = (
        _METRONOME_MAX_EVENTS if kind == Source.Kind.METRONOME else settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST
    )
    if isinstance(body, list) and body:
        shown = body[:limit]
    elif isinstance(body, dict):
        shown = [body]
    else:
        shown = []  # nothing readable to show: one row stands for the request
    vendor_events_refuse(app=api_key.app, kind=kind, items=shown, reason=reason)


@csrf_exempt
@require_POST
@_vendor_errors
def kable_events_create(request: HttpRequest) -> HttpResponse:
    """Kable's `POST /api/v1/events/create`: `KABLE-CLIENT-ID` is the app id, `KABLE-CLIENT-SECRET`
    an API key; the body an array (or one) of `{clientId, timestamp, transactionId, data}`."""
    app_id = request.META.get("HTTP_KABLE_CLIENT_ID", "").strip()
    secret = request.META.get("HTTP_KABLE_CLIENT_SECRET", "").strip()
    if not app_id or not secret:
        raise _VendorError("Send KABLE-CLIENT-ID (the app id) and KABLE-CLIENT-SECRET (an API key).", 401)
    api_key = _auth(secret, app_id)
    _api_key_rate_limit(api_key)
    receipt = _receive_whole(request, api_key, Source.Kind.KABLE, _kable_items, _kable_event)
    return _json({"success": True, "accepted": receipt.accepted, "duplicates": receipt.duplicates})


def _kable_items(body: Any) -> list[Any]:
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise _VendorError("The body must be an event or a non-empty array of events.")
    limit = settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST
    if len(items) > limit:
        raise _VendorError(f"At most {limit} events per request; this request has {len(items)}.", 413)
    return items
