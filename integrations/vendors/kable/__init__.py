"""Kable, both ways.

In: the Kable-compatible `POST /kable/api/v1/events/create` (below): the same API, answered by the
hub; `KABLE-CLIENT-ID` is the app id and `KABLE-CLIENT-SECRET` an API key; the request is checked
whole by Kable's rules, its events kept in the inbox of the app's `kable` source and stored by that
source's mappings (first the ingest preset). The track preset is Segment's Kable settings.

Out: the events connector and sendEvent's default mapping (`connector.py`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.sources import openapi
from integrations.sources.endpoints import (
    VendorError,
    api_key_auth,
    api_key_rate_limit,
    compatible_receive,
    json_response,
    vendor_errors,
)
from integrations.sources.formats import CompatibleFormat
from integrations.sources.models import Source
from integrations.sources.presets import Preset

from .. import OpenApiFragment, Vendor, VendorSource, vendor_register
from .connector import SEND_EVENT, KableConnector

# Kable's event field → the usage event's: what the ingest preset maps, and what Segment's
# sendEvent defaults mean for a usage event (the track preset).
USAGE_EVENT_FIELDS = {
    "transactionId": "event_id",
    "clientId": "customer_id",
    "timestamp": "timestamp",
    "data": "properties",
}
# The text fields Kable requires of an event (besides an RFC 3339 timestamp); `data`, when
# present, is an object.
REQUIRED = ("transactionId", "clientId")
# Kable events carry no name: the first of these keys of `data` that holds one, else the default.
EVENT_NAME_KEYS = ("eventName", "event_name", "event", "eventType")
DEFAULT_EVENT_NAME = "kable_event"


def event_name(data: object) -> str:
    """Kable's event name: `data.eventName`, `event_name`, `event` or `eventType`, else kable_event."""
    if isinstance(data, dict):
        for key in EVENT_NAME_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    return DEFAULT_EVENT_NAME


class KableFormat(CompatibleFormat):
    kind = "kable"
    id_field = "transactionId"

    def event_name(self, item: dict) -> str:
        return event_name(item.get("data"))


INGEST = Preset(
    key="kable_ingest",
    name="Kable events → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        **{usage: {"path": f"$.{name}"} for name, usage in USAGE_EVENT_FIELDS.items()},
        "event_name": {
            "coalesce": [
                *({"path": f"$.data.{key}"} for key in EVENT_NAME_KEYS),
                {"literal": DEFAULT_EVENT_NAME},
            ]
        },
    },
    description="POST /kable/api/v1/events/create: transactionId, clientId, data (and its event name).",
)


def kable_track(
    *, client_id_field: str = "userId", properties_mappings: dict[str, str] | None = None
) -> Preset:
    """Segment's Kable settings as a preset: which field holds the client id (dot notation, default
    `userId`) and Properties Mappings (`segmentX: kableX`, `nested.field: dimension`) (seed 002)."""
    fields: dict[str, Any] = {
        usage: dict(SEND_EVENT.fields[name]) for name, usage in USAGE_EVENT_FIELDS.items()
    }
    fields["customer_id"] = {"path": "$." + client_id_field.removeprefix("$.")}
    if properties_mappings:
        fields["properties"]["rename"] = dict(properties_mappings)
    return Preset(
        key="kable_track",
        name="Kable: Track → usage event",
        trigger=SEND_EVENT.trigger,
        action="usage_event",
        fields={"event_name": {"path": "$.event"}, **fields},
        description="Kable's Client ID Field (default userId) and Properties Mappings.",
    )


def _items(body: object) -> list[Any]:
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise VendorError("The body must be an event or a non-empty array of events.")
    limit = settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST
    if len(items) > limit:
        raise VendorError(f"At most {limit} events per request; this request has {len(items)}.", 413)
    return items


@csrf_exempt
@require_POST
@vendor_errors
def kable_events_create(request: HttpRequest) -> HttpResponse:
    """Kable's `POST /api/v1/events/create`: `KABLE-CLIENT-ID` is the app id, `KABLE-CLIENT-SECRET`
    an API key; the body an array (or one) of `{clientId, timestamp, transactionId, data}`."""
    app_id = request.META.get("HTTP_KABLE_CLIENT_ID", "").strip()
    secret = request.META.get("HTTP_KABLE_CLIENT_SECRET", "").strip()
    if not app_id or not secret:
        raise VendorError("Send KABLE-CLIENT-ID (the app id) and KABLE-CLIENT-SECRET (an API key).", 401)
    api_key = api_key_auth(secret, app_id)
    api_key_rate_limit(api_key)
    receipt = compatible_receive(
        request,
        api_key=api_key,
        kind=Source.Kind.KABLE,
        items_of=_items,
        required=REQUIRED,
        object_field="data",
        shown_at_most=settings.HUB_USAGE_EVENTS_MAX_PER_REQUEST,
    )
    return json_response({"success": True, "accepted": receipt.accepted, "duplicates": receipt.duplicates})


def _openapi_schemas() -> dict[str, dict]:
    required_text = openapi.REQUIRED_TEXT
    return {
        "KableEvent": {
            "type": "object",
            "required": ["clientId", "timestamp", "transactionId"],
            "properties": {
                "clientId": required_text,
                "timestamp": openapi.RFC3339,
                "transactionId": required_text,
                "data": {"type": "object", "description": "Properties; `eventName` names the event."},
            },
        },
        "KableReceipt": {
            "type": "object",
            "required": ["success", "accepted", "duplicates"],
            "properties": {
                "success": {"type": "boolean"},
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
            },
        },
    }


def _openapi_paths() -> dict[str, dict]:
    event = {"$ref": openapi.REF + "KableEvent"}
    return {
        "/kable/api/v1/events/create": openapi.operation(
            "kable_events_create",
            "Kable-compatible ingest",
            {"anyOf": [event, {"type": "array", "items": event}]},
            openapi.responses(
                {"description": "Stored.", "content": openapi.json_content("KableReceipt")}, "VendorError"
            ),
            [{"KableClientId": [], "KableClientSecret": []}],
            "Kable-compatible",
        )
    }


vendor_register(
    Vendor(
        key="kable",
        label="Kable",
        formats=(KableFormat(),),
        presets=(kable_track, INGEST),
        source=VendorSource(kind=Source.Kind.KABLE, name="Kable API", presets=(INGEST.key,)),
        urlpatterns=lambda: [
            path("kable/api/v1/events/create", kable_events_create, name="kable_events_create")
        ],
        openapi=OpenApiFragment(
            schemas=_openapi_schemas,
            paths=_openapi_paths,
            security_schemes={
                "KableClientId": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "KABLE-CLIENT-ID",
                    "description": "The app id.",
                },
                "KableClientSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "KABLE-CLIENT-SECRET",
                    "description": "An API key of the app.",
                },
            },
        ),
        connector=KableConnector(),
    )
)
