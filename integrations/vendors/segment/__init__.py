"""Segment, both ways.

In: the HTTP Tracking API (`/segment/v1/{track,identify,group,page,screen,alias,batch}`: the write
key as the Basic-auth user or `writeKey` in the body; gzip bodies) and a source's webhook URL
(`/hooks/<token>`: Segment Webhooks Classic and Actions, and whatever other registered format an
item is in, such as ChartMogul's; `X-Signature`, Segment's hex HMAC-SHA1 of the body, verified
when the source has a shared secret). Segment's spec rules: a known `type`; `userId` or
`anonymousId`; `event` for track, `groupId` for group, `previousId` for alias; a `messageId` under
100 characters (one is made when absent).

Out: lifecycle activities as track calls to `/v1/batch` (`connector.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from hub.errors import AuthenticationError
from integrations.sources import openapi
from integrations.sources.endpoints import (
    BadRequest,
    TooLarge,
    errors_as_json,
    json_response,
    parse_json,
    raw_body,
    source_rate_limit,
)
from integrations.sources.formats import Received
from integrations.sources.receipt import Receipt, inbox_receive
from integrations.sources.services import source_by_webhook_token, source_by_write_key

from .. import OpenApiFragment, Vendor, vendor_register
from .connector import SegmentConnector

# --- In: Segment's spec messages ----------------------------------------------------------------

TYPES = ("track", "identify", "group", "page", "screen", "alias")
MAX_MESSAGE_ID = 100
REQUIRED_BY_TYPE = {"track": "event", "group": "groupId", "alias": "previousId"}


def _present(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


class SegmentFormat:
    """Segment's spec messages: checks Segment's rules (see the module's docstring)."""

    kind = "segment"

    def accepts(self, item: object) -> bool:
        return isinstance(item, dict) and item.get("type") in TYPES

    def normalize(self, item: object, *, received_at: str, defaults: dict | None = None) -> Received:
        if not isinstance(item, dict):
            return Received(self.kind, item, error="each message must be a JSON object")
        message = dict(item)
        if defaults:
            for key, value in defaults.items():
                if key == "context" and isinstance(value, dict) and isinstance(message.get("context"), dict):
                    message["context"] = {**value, **message["context"]}
                else:
                    message.setdefault(key, value)
        message.pop("writeKey", None)
        kind = message.get("type")
        message_id = message.get("messageId")
        if message_id is None:
            message_id = message["messageId"] = f"hub-{uuid.uuid4()}"
        out = Received(self.kind, message, message_id=_text(message_id)[:255], type=_text(kind)[:30])
        out.event = _text(message.get("event") or message.get("name"))[:255]
        message["receivedAt"] = received_at
        if kind not in TYPES:
            out.error = f"type must be one of {', '.join(TYPES)}"
        elif not isinstance(message_id, str) or not message_id.strip():
            out.error = "messageId must be a non-empty string"
        elif len(message_id) >= MAX_MESSAGE_ID:
            out.error = f"messageId must be under {MAX_MESSAGE_ID} characters"
        elif not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
            out.error = "userId or anonymousId is required"
        elif kind in REQUIRED_BY_TYPE and not _present(message.get(REQUIRED_BY_TYPE[kind])):
            out.error = f"{REQUIRED_BY_TYPE[kind]} is required for {kind}"
        elif kind == "track" and not isinstance(message.get("event"), str):
            out.error = "event must be a string"
        else:
            for key in ("properties", "traits", "context"):
                if key in message and not isinstance(message[key], dict | None):
                    out.error = f"{key} must be an object"
                    break
        return out


# --- In: the tracking API ----------------------------------------------------------------------


def _basic_user(request: HttpRequest) -> str:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("The Authorization header is not valid Basic auth.") from None
    return decoded.partition(":")[0]


@csrf_exempt
@require_POST
@errors_as_json
def segment_tracking(request: HttpRequest, kind: str) -> HttpResponse:
    """One Segment call (`kind` one of TYPES) or a batch; invalid messages are listed as rejected."""
    is_batch = kind == "batch"
    max_bytes = settings.HUB_SOURCE_BATCH_MAX_BYTES if is_batch else settings.HUB_SOURCE_MESSAGE_MAX_BYTES
    body = parse_json(raw_body(request, max_bytes=max_bytes))
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    write_key = _basic_user(request) or body.get("writeKey")
    source = source_by_write_key(write_key if isinstance(write_key, str) else "")
    source_rate_limit(source)
    if is_batch:
        items = body.get("batch")
        if not isinstance(items, list):
            raise BadRequest("batch must be an array of messages.")
        _check_count(items)
        defaults = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
        receipt = inbox_receive(source=source, items=items, format_kind="segment", defaults=defaults)
        return json_response(receipt.body())
    body["type"] = kind
    return _single_receipt(inbox_receive(source=source, items=[body], format_kind="segment"))


def _check_count(items: list[Any]) -> None:
    """A batch over Segment's message count is refused whole (400), like one over its size."""
    limit = settings.HUB_SOURCE_BATCH_MAX_MESSAGES
    if len(items) > limit:
        raise TooLarge(f"A batch holds at most {limit} messages; this one has {len(items)}.")


def _single_receipt(receipt: Receipt) -> HttpResponse:
    """The answer to one message: 200, or 400 with the reason when it was rejected (Segment's)."""
    if receipt.rejected:
        return json_response({"error": receipt.rejected[0]["reason"], **receipt.body()}, status=400)
    return json_response(receipt.body())


def segment_view(kind: str) -> Callable[[HttpRequest], HttpResponse]:
    """The view of one Segment endpoint (`/segment/v1/<kind>`)."""
    assert kind in (*TYPES, "batch")

    def view(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = segment_tracking(request, kind)  # (errors_as_json is untyped)
        return response

    view.__name__ = f"segment_{kind}"
    return csrf_exempt(view)


# --- In: webhook URLs --------------------------------------------------------------------------


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
@errors_as_json
def webhook(request: HttpRequest, token: str) -> HttpResponse:
    """A source's webhook URL: Segment events (one or an array) and ChartMogul-shaped payloads."""
    source = source_by_webhook_token(token)
    raw = raw_body(request, max_bytes=settings.HUB_SOURCE_BATCH_MAX_BYTES)
    if source.shared_secret and not _signature_valid(
        source.shared_secret, raw, request.META.get("HTTP_X_SIGNATURE", "")
    ):
        raise AuthenticationError("Missing or invalid X-Signature.")
    source_rate_limit(source)
    body = parse_json(raw)
    if body in ({}, [{}]):
        # Connection tests (ChartMogul's, Segment's) post an empty object: nothing to keep.
        return json_response({"success": True, "accepted": 0})
    if not isinstance(body, list):
        # One message answers like the tracking API's single calls: 400 when it is rejected.
        return _single_receipt(inbox_receive(source=source, items=[body]))
    _check_count(body)
    return json_response(inbox_receive(source=source, items=body).body())


# --- OpenAPI ------------------------------------------------------------------------------------

MESSAGE_ID_SCHEMA = {
    **openapi.REQUIRED_TEXT,
    "maxLength": MAX_MESSAGE_ID - 1,
    "description": "Made when absent.",
}


def _openapi_schemas() -> dict[str, dict]:
    text, required_text, ref = openapi.TEXT, openapi.REQUIRED_TEXT, openapi.REF
    schemas: dict[str, dict] = {
        "SegmentMessage": {
            "type": "object",
            "description": "A Segment spec message; `type` is the endpoint's own on /segment/v1/<type>. "
            "`userId` or `anonymousId` is required.",
            "properties": {
                "type": {"type": "string", "enum": list(TYPES)},
                "messageId": MESSAGE_ID_SCHEMA,
                "userId": required_text,
                "anonymousId": required_text,
                "event": required_text,
                "name": text,
                "groupId": required_text,
                "previousId": required_text,
                "timestamp": text,
                "sentAt": text,
                "originalTimestamp": text,
                "properties": {"type": "object"},
                "traits": {"type": "object"},
                "context": {"type": "object"},
                "integrations": {"type": "object"},
                "writeKey": {"type": "string", "description": "The write key, when not in Authorization."},
            },
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        },
        "SegmentBatch": {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "items": {"allOf": [{"$ref": ref + "SegmentMessage"}, {"required": ["type"]}]},
                    "maxItems": settings.HUB_SOURCE_BATCH_MAX_MESSAGES,
                },
                "context": {"type": "object", "description": "Defaults merged into each message."},
                "integrations": {"type": "object"},
                "writeKey": text,
            },
        },
    }
    items = [{"$ref": ref + name} for name in openapi.webhook_item_schemas()]
    schemas["WebhookPayload"] = {
        "description": "One message (Segment's or another registered format's), or an array of them.",
        "anyOf": [
            *items,
            {"type": "array", "items": {"anyOf": items}, "maxItems": settings.HUB_SOURCE_BATCH_MAX_MESSAGES},
        ],
    }
    for kind in TYPES:
        message: dict[str, Any] = {"$ref": ref + "SegmentMessage"}
        if kind in REQUIRED_BY_TYPE:
            message = {"allOf": [message, {"required": [REQUIRED_BY_TYPE[kind]]}]}
        schemas[f"Segment{kind.title()}"] = message
    return schemas


def _openapi_paths() -> dict[str, dict]:
    receipt = {
        "description": "Kept (each refused message listed).",
        "content": openapi.json_content("SourceReceipt"),
    }
    answers = openapi.responses(receipt, "SourceError")
    paths: dict[str, dict] = {}
    for kind in (*TYPES, "batch"):
        paths[f"/segment/v1/{kind}"] = openapi.operation(
            f"segment_{kind}",
            f"Segment tracking API: {kind}",
            {"$ref": openapi.REF + f"Segment{kind.title()}"},
            answers,
            [{"SegmentWriteKey": []}],
            "Segment-compatible",
        )
    paths["/hooks/{token}"] = openapi.operation(
        "source_webhook",
        "A source's webhook URL (the token in the path is the credential)",
        {"$ref": openapi.REF + "WebhookPayload"},
        answers,
        [],
        "Webhooks",
        parameters=[
            {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "X-Signature",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Hex HMAC-SHA1 of the body, required when the source has a shared secret.",
            },
        ],
    )
    return paths


def _urlpatterns() -> list[Any]:
    return [
        *[
            path(f"segment/v1/{kind}", segment_view(kind), name=f"segment_{kind}")
            for kind in (*TYPES, "batch")
        ],
        path("hooks/<str:token>", webhook, name="source_webhook"),
    ]


vendor_register(
    Vendor(
        key="segment",
        label="Segment",
        formats=(SegmentFormat(),),
        urlpatterns=_urlpatterns,
        openapi=OpenApiFragment(
            schemas=_openapi_schemas,
            paths=_openapi_paths,
            security_schemes={
                "SegmentWriteKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A source's write key as the Basic-auth user, empty password (or "
                    "`writeKey` in the body).",
                },
            },
            webhook_items=("SegmentMessage",),
        ),
        connector=SegmentConnector(),
    )
)
