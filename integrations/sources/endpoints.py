"""What the inbound HTTP endpoints share; each endpoint lives with its platform in
`integrations/vendors/` (Segment's tracking API and webhook URL, the Metronome- and
Kable-compatible ingest) and is routed from there, each under its own base URL, so a client is
simply pointed at it.

Plain Django views: every vendor has its own error shape, and these are hot paths. Here: the body
(size checked before parsing, gzip), JSON answers and errors, rate limits, and the pipeline of the
vendor-compatible ingest endpoints (`compatible_receive`: the vendor's rules checked whole, all or
nothing, in the vendor's error shape; the events then kept in the inbox of the app's source of that
kind and run through its mappings inline, so they are stored before the 2xx).

Rate limits (hub.rate_limits, counted in Redis, 429 with `Retry-After`): vendor-compatible requests
count against their API key's HUB_RATE_LIMIT budget, the same as on `/v1/`; Segment calls and
webhooks against their source's HUB_SOURCE_RATE_LIMIT. Credentials are checked first, so requests
with bad ones spend no budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from events.services import EventError, InvalidEvents
from hub.errors import AuthenticationError, HubError, RateLimited
from hub.models import ApiKey
from hub.rate_limits import api_rate_limit_exceeded, source_rate_limit_exceeded
from hub.request_body import body_read, json_parse, nul_refuse
from hub.services.accounts import api_key_authenticate

from .dry_run import messages_check
from .models import Source
from .services import VendorReceipt, vendor_events_receive, vendor_events_refuse, vendor_source_get_or_create

View = Callable[..., HttpResponse]


class BadRequest(HubError):
    pass


class TooLarge(HubError):
    status_code = 400  # Segment answers 400 to an oversized request


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def _error_json(exc: HubError, data: dict) -> HttpResponse:
    response = json_response(data, status=exc.status_code)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def source_rate_limit(source: Source) -> None:
    """RateLimited when the source is over its HUB_SOURCE_RATE_LIMIT budget."""
    over = source_rate_limit_exceeded(source_id=source.pk)
    if over is not None:
        raise RateLimited(over.retry_after)


def api_key_rate_limit(api_key: ApiKey) -> None:
    """RateLimited when the API key is over its HUB_RATE_LIMIT budget."""
    over = api_rate_limit_exceeded(caller_key=f"key:{api_key.pk}")
    if over is not None:
        raise RateLimited(over.retry_after)


def raw_body(request: HttpRequest, *, max_bytes: int) -> bytes:
    """The body, gunzipped when `Content-Encoding: gzip`, refused past `max_bytes` either way with
    a 400 (Segment's answer to an oversized request)."""
    return body_read(request, max_bytes=max_bytes, too_large=TooLarge, gunzip=True)


def parse_json(raw: bytes) -> Any:
    """The JSON of a body, or BadRequest saying why not."""
    return json_parse(raw, empty="The request body is empty; send JSON.", error=BadRequest)


def errors_as_json(view: View) -> View:
    """Answer the hub's errors as `{"error": ...}` (and their other fields)."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except HubError as exc:
            return _error_json(exc, exc.body())

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


# --- Vendor-compatible ingest -------------------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_COMPAT_MAX_BYTES = 1024 * 1024


class VendorError(HubError):
    """An error in the vendor's shape: `{"message": ...}`."""

    def __init__(self, message: str, status: int = 400):
        self.status_code = status
        super().__init__(message)

    def body(self) -> dict:
        return {"message": str(self)}


def vendor_errors(view: View) -> View:
    """Answer errors in the vendors' shape: `{"message": ...}` (with `errors` per event)."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except VendorError as exc:
            return json_response(exc.body(), status=exc.status_code)
        except HubError as exc:
            body = exc.body() if hasattr(exc, "errors") else {}
            return _error_json(exc, {"message": str(exc), **{k: v for k, v in body.items() if k == "errors"}})

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _compat_body(request: HttpRequest) -> Any:
    """The body (NUL refused, as on /v1/), its errors in the vendors' shape; 413 when too large."""
    try:
        raw = raw_body(request, max_bytes=_COMPAT_MAX_BYTES)
        body = parse_json(raw)
        nul_refuse(raw)
    except TooLarge as exc:
        raise VendorError(str(exc), 413) from None
    except HubError as exc:
        raise VendorError(str(exc)) from None
    return body


def api_key_auth(key: str, app_id: str | None = None) -> ApiKey:
    """The API key (of the app `app_id` when given), or a 401 in the vendor's shape."""
    try:
        return api_key_authenticate(key=key, app_public_id=app_id)
    except AuthenticationError as exc:
        raise VendorError(str(exc), 401) from None


def rfc3339(value: Any, index: int, name: str) -> str:
    """An RFC 3339 timestamp, or a 400 naming the event and field."""
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        raise VendorError(f"[{index}].{name} must be an RFC 3339 timestamp (like 2024-03-01T12:00:00Z)")
    return value.strip()


def required_text(event: dict, name: str, index: int) -> str:
    """A non-empty text field, or a 400 naming the event and field."""
    value = event.get(name)
    if not isinstance(value, str) or not value.strip():
        raise VendorError(f"[{index}].{name} is required (a non-empty string)")
    return value


def _event_check(event: Any, i: int, *, required: tuple[str, ...], object_field: str) -> None:
    """One event by a vendor's rules: an object, `object_field` an object (or null) when present,
    each `required` field non-empty text, `timestamp` RFC 3339 (the first broken rule is a 400)."""
    if not isinstance(event, dict):
        raise VendorError(f"[{i}] must be an event object")
    value = event.get(object_field, {})
    if value is not None and not isinstance(value, dict):
        raise VendorError(f"[{i}].{object_field} must be an object")
    for name in required:
        required_text(event, name, i)
    rfc3339(event.get("timestamp"), i, "timestamp")


_UNREAD = object()


def compatible_receive(
    request: HttpRequest,
    *,
    api_key: ApiKey,
    kind: str,
    items_of: Callable[[Any], list[Any]],
    required: tuple[str, ...],
    object_field: str,
    shown_at_most: int,
) -> VendorReceipt:
    """All or nothing: the body, its events (`items_of`), each event's fields by the vendor's rules
    (`required` text, `object_field` an object, an RFC 3339 `timestamp`), then a dry run of the app's
    source's current mappings over the events (what they would store must pass the usage-event
    rules: a timestamp at most 24 h ahead, sizes...); then the events are received. A request
    refused here is recorded in the source's debugger as rejected with the reason: its events (at
    most `shown_at_most` of them), or the request as one message when it has none to show (a body
    unread, not JSON, not events)."""
    body: Any = _UNREAD
    try:
        body = _compat_body(request)
        items = items_of(body)
        for i, event in enumerate(items):
            _event_check(event, i, required=required, object_field=object_field)
        source = vendor_source_get_or_create(app=api_key.app, kind=kind)
        problems = messages_check(source=source, items=items, format_kind=kind)
        if problems:
            raise InvalidEvents([EventError(index, mapping, error) for index, mapping, error in problems])
    except InvalidEvents as exc:
        details = "; ".join(f"[{e.index}].{e.field}: {e.message}" for e in exc.errors)
        _refuse(api_key, kind, body, f"{exc} {details}", shown_at_most)
        raise
    except HubError as exc:
        _refuse(api_key, kind, body, str(exc), shown_at_most)
        raise
    return vendor_events_receive(app=api_key.app, kind=kind, items=items)


def _refuse(api_key: ApiKey, kind: str, body: Any, reason: str, shown_at_most: int) -> None:
    if isinstance(body, list) and body:
        shown = body[:shown_at_most]
    elif isinstance(body, dict):
        shown = [body]
    else:
        shown = []  # nothing readable to show: one row stands for the request
    vendor_events_refuse(app=api_key.app, kind=kind, items=shown, reason=reason)
