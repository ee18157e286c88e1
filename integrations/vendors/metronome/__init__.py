"""Metronome, both ways.

In: the Metronome-compatible `POST /metronome/v1/ingest` (below): the same API, answered by the
hub, with an API key as the Bearer token; the request is checked whole by Metronome's rules, its
events kept in the inbox of the app's `metronome` source and stored by that source's mappings
(first the ingest preset: the conversion this endpoint always made).

Out: the `/v1/ingest` connector and sendEvent's default mapping (`connector.py`).
"""

from __future__ import annotations

from typing import Any

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
    vendor_errors,
)
from integrations.sources.formats import CompatibleFormat
from integrations.sources.models import Source
from integrations.sources.presets import Preset

from .. import OpenApiFragment, Vendor, VendorSource, vendor_register
from .connector import SEND_EVENT, MetronomeConnector

MAX_EVENTS = 100
# The text fields Metronome requires of an event (besides an RFC 3339 timestamp); `properties`,
# when present, is an object.
REQUIRED = ("transaction_id", "customer_id", "event_type")
# Metronome's event field → the usage event's: what the ingest preset maps, and what Segment's
# sendEvent defaults mean for a usage event (the track preset).
USAGE_EVENT_FIELDS = {
    "transaction_id": "event_id",
    "customer_id": "customer_id",
    "event_type": "event_name",
    "timestamp": "timestamp",
    "properties": "properties",
}


class MetronomeFormat(CompatibleFormat):
    kind = "metronome"
    id_field = "transaction_id"

    def event_name(self, item: dict) -> Any:
        return item.get("event_type")


INGEST = Preset(
    key="metronome_ingest",
    name="Metronome ingest → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={usage: {"path": f"$.{name}"} for name, usage in USAGE_EVENT_FIELDS.items()},
    description="POST /metronome/v1/ingest: transaction_id, customer_id, event_type, timestamp, properties.",
)
TRACK = Preset(
    key="metronome_track",
    name="Metronome: Track → usage event",
    trigger=SEND_EVENT.trigger,
    action="usage_event",
    fields={usage: SEND_EVENT.fields[name] for name, usage in USAGE_EVENT_FIELDS.items()},
    description="Metronome (Actions) Send Event defaults: the customer is context.groupId.",
)


def _items(body: object) -> list[Any]:
    if not isinstance(body, list):
        raise VendorError("The body must be a JSON array of events.")
    if not 1 <= len(body) <= MAX_EVENTS:
        raise VendorError(
            f"Send between 1 and {MAX_EVENTS} events; this request has {len(body)}."
            if body
            else "The array of events is empty."
        )
    return body


@csrf_exempt
@require_POST
@vendor_errors
def metronome_ingest(request: HttpRequest) -> HttpResponse:
    """Metronome's `POST /v1/ingest`: a JSON array of 1 to 100 events; 200 with an empty body."""
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise VendorError("Send the API key as Authorization: Bearer <key>.", 401)
    api_key = api_key_auth(key.strip())
    api_key_rate_limit(api_key)
    compatible_receive(
        request,
        api_key=api_key,
        kind=Source.Kind.METRONOME,
        items_of=_items,
        required=REQUIRED,
        object_field="properties",
        shown_at_most=MAX_EVENTS,
    )
    return HttpResponse(status=200)


def _openapi_schemas() -> dict[str, dict]:
    required_text = openapi.REQUIRED_TEXT
    return {
        "MetronomeEvent": {
            "type": "object",
            "required": ["transaction_id", "customer_id", "timestamp", "event_type"],
            "properties": {
                "transaction_id": required_text,
                "customer_id": required_text,
                "timestamp": openapi.RFC3339,
                "event_type": required_text,
                "properties": {"type": "object"},
            },
        },
    }


def _openapi_paths() -> dict[str, dict]:
    return {
        "/metronome/v1/ingest": openapi.operation(
            "metronome_ingest",
            "Metronome-compatible ingest",
            {
                "type": "array",
                "items": {"$ref": openapi.REF + "MetronomeEvent"},
                "minItems": 1,
                "maxItems": MAX_EVENTS,
            },
            openapi.responses({"description": "Stored (an empty body)."}, "VendorError"),
            [{"BearerApiKey": []}],
            "Metronome-compatible",
        )
    }


vendor_register(
    Vendor(
        key="metronome",
        label="Metronome",
        formats=(MetronomeFormat(),),
        presets=(TRACK, INGEST),
        source=VendorSource(kind=Source.Kind.METRONOME, name="Metronome API", presets=(INGEST.key,)),
        urlpatterns=lambda: [path("metronome/v1/ingest", metronome_ingest, name="metronome_ingest")],
        openapi=OpenApiFragment(schemas=_openapi_schemas, paths=_openapi_paths),
        connector=MetronomeConnector(),
    )
)
