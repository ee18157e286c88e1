"""Mantle-compatible usage events API: `POST /v1/usage_events` (one event or `{"events": [...]}`)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers

from hub.api import ErrorSerializer
from hub.api_dispatch import DirectPostView
from hub.errors import HubError
from hub.request_body import json_body

from .services import usage_events_ingest

_Event = inline_serializer(
    "UsageEventIn",
    {
        "eventName": serializers.CharField(help_text="Also accepted as event_name."),
        "eventId": serializers.CharField(required=False, help_text="Dedupe key; also event_id."),
        "customerId": serializers.CharField(
            required=False,
            help_text="Hub id, customer API token, platform id or myshopify domain. "
            "Optional with a customer API token.",
        ),
        "timestamp": serializers.CharField(
            required=False, help_text="Epoch milliseconds or an ISO-8601 string; default now."
        ),
        "properties": serializers.DictField(required=False),
    },
)

_Accepted = inline_serializer(
    "UsageEventsAccepted",
    {
        "success": serializers.BooleanField(),
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
    },
)


def events_of(body) -> list:
    """The events of a Mantle body: `{"events": [...]}`, a single event object, or an array."""
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
        if not isinstance(events, list):
            raise HubError("events must be an array of event objects.")
        return events
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return body
    raise HubError('The body must be an event object or {"events": [...]}.')


@extend_schema_view(
    post=extend_schema(
        operation_id="usage_events_create",
        request=_Event,
        responses={200: _Accepted, 400: ErrorSerializer, 401: ErrorSerializer, 413: ErrorSerializer,
                   415: ErrorSerializer},
        examples=[OpenApiExample("single", value={"eventName": "order_created", "customerId": "shop-1",
                                                  "eventId": "e-1", "timestamp": 1709315224000,
                                                  "properties": {"total": 12.5}})],
        tags=["Usage events"],
    )
)  # fmt: skip
class UsageEventsView(DirectPostView):
    """Send one usage event or many; each is stored once per event id."""

    def answer(self, request):
        body = json_body(request, max_bytes=settings.HUB_USAGE_EVENTS_MAX_REQUEST_BYTES)
        result = usage_events_ingest(
            app=request.user.app, raw_events=events_of(body), customer=request.user.customer
        )
        return {"success": True, "accepted": result.accepted, "duplicates": result.duplicates}
