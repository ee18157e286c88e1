"""Segment's HTTP Tracking API: track calls in Object-Action style, sent to `/v1/batch`.

Limits (Segment's docs): 32 KB per message, 500 KB and 2,500 messages per batch. Auth is the
write key as the Basic-auth user with an empty password. `messageId` is the activity's id, so
Segment dedupes retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from django.utils import timezone

from hub.models import Activity
from integrations.connectors import Action, BaseConnector, BatchRequest, MessageRefused
from integrations.delivery_rows import ActivityRow, iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

HOSTS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}
LIBRARY = {"name": "integration-hub", "version": "0.1.0"}

# Activity kind -> Segment event name (Object Action, Title Case).
EVENT_NAMES: dict[str, str] = {
    Activity.Kind.INSTALLED: "App Installed",
    Activity.Kind.UNINSTALLED: "App Uninstalled",
    Activity.Kind.INSTALLATION_FROZEN: "App Installation Frozen",
    Activity.Kind.INSTALLATION_REACTIVATED: "App Installation Reactivated",
    Activity.Kind.REVIEWED: "App Reviewed",
    Activity.Kind.SUBSCRIBED: "Plan Subscribed",
    Activity.Kind.UNSUBSCRIBED: "Plan Unsubscribed",
    Activity.Kind.UPGRADED: "Plan Upgraded",
    Activity.Kind.DOWNGRADED: "Plan Downgraded",
    Activity.Kind.PLAN_CHANGED: "Plan Changed",
    Activity.Kind.SUBSCRIPTION_FROZEN: "Subscription Frozen",
    Activity.Kind.SUBSCRIPTION_UNFROZEN: "Subscription Unfrozen",
    Activity.Kind.USAGE_LIMIT_APPROACHING: "Usage Limit Approaching",
    Activity.Kind.USAGE_LIMIT_REACHED: "Usage Limit Reached",
    Activity.Kind.UPGRADE_SUGGESTED: "Plan Upgrade Suggested",
}
TEST_EVENT = "Hub Test Event"


def base_url(integration: Integration) -> str:
    if integration.region == "custom":
        return integration.custom_host.rstrip("/")
    return HOSTS[integration.region]


def user_id(integration: Integration, activity: ActivityRow) -> str:
    """The customer's id, or the chosen custom field's value as it was when the activity happened."""
    if integration.user_id_field:
        value = (activity.customer_fields or {}).get(integration.user_id_field)
        if value not in (None, "") and isinstance(value, str | int | float):
            return str(value)
    return activity.customer_public_id


SEND_TRACK = Action(
    name="sendTrack",
    label="Usage events as track calls",
    item_kind="usage_event",
    trigger='type = "track"',
    fields={
        "event": {"path": "$.event"},
        "userId": {"path": "$.userId"},
        "messageId": {"path": "$.messageId"},
        "timestamp": {"path": "$.timestamp"},
        "properties": {"path": "$.properties"},
        "context": {"object": {"groupId": {"path": "$.context.groupId"}}},
    },
    targets=("event", "userId", "anonymousId", "messageId", "timestamp", "properties", "context"),
    required=("event", "messageId"),
)
SEND_GROUP = Action(
    name="sendGroup",
    label="Customers as group calls",
    item_kind="customer",
    trigger='type = "group"',
    fields={
        "userId": {"path": "$.userId"},
        "groupId": {"path": "$.groupId"},
        "messageId": {"path": "$.messageId"},
        "timestamp": {"path": "$.timestamp"},
        "traits": {"path": "$.traits"},
    },
    targets=("userId", "anonymousId", "groupId", "messageId", "timestamp", "traits", "context"),
    required=("groupId", "messageId"),
)
SEND_IDENTIFY = Action(
    name="sendIdentify",
    label="Contacts as identify calls",
    item_kind="contact",
    trigger='type = "identify"',
    fields={
        "userId": {"path": "$.userId"},
        "messageId": {"path": "$.messageId"},
        "timestamp": {"path": "$.timestamp"},
        "traits": {"path": "$.traits"},
        "context": {"object": {"groupId": {"path": "$.context.groupId"}}},
    },
    targets=("userId", "anonymousId", "messageId", "timestamp", "traits", "context"),
    required=("messageId",),
)
_CALL_TYPES = {SEND_TRACK.name: "track", SEND_GROUP.name: "group", SEND_IDENTIFY.name: "identify"}
# The keys of a call, and of its context, in the order Segment's own actions write them.
_CALL_KEYS = {
    "track": ("userId", "anonymousId", "timestamp", "event", "messageId"),
    "identify": ("userId", "anonymousId", "timestamp", "messageId"),
    "group": ("userId", "anonymousId", "groupId", "timestamp", "messageId"),
}
_CONTEXT_KEYS = ("traits", "app", "campaign", "consent", "device", "ip", "locale", "location", "network",
                 "os", "page", "screen", "userAgent", "timezone", "groupId")  # fmt: skip


def _segment_call(call: str, values: dict[str, Any]) -> dict[str, Any]:
    """The call as Segment's sendTrack / sendIdentify / sendGroup return it in their batch (keys in
    their order, `context.consent` and a track's `context.traits` `{}` when not mapped, properties
    or traits `{}` when there are none), plus the hub's `context.library`."""
    message = {k: values[k] for k in _CALL_KEYS[call] if values.get(k) is not None}
    raw = values.get("context")
    mapped: dict[str, Any] = raw if isinstance(raw, dict) else {}
    context: dict[str, Any] = {}
    for key in _CONTEXT_KEYS:
        if key == "consent" or (key == "traits" and call == "track"):
            context[key] = mapped[key] if isinstance(mapped.get(key), dict) else {}
        elif mapped.get(key) is not None:
            context[key] = mapped[key]
    context.update({k: v for k, v in mapped.items() if k not in context and v is not None})
    context["library"] = LIBRARY
    message["context"] = context
    body = "properties" if call == "track" else "traits"
    message[body] = values.get(body) if isinstance(values.get(body), dict) else {}
    message["type"] = call
    return message


class SegmentConnector(BaseConnector):
    kind = "segment"
    label = "Segment"
    max_message_bytes = 32 * 1024
    max_batch_bytes = 500 * 1024
    max_batch_messages = 2500
    # Besides activities: usage events, customers and contacts, as Segment's own sendTrack,
    # sendGroup and sendIdentify actions make them (sent to /v1/batch like activities).
    actions = {a.name: a for a in (SEND_TRACK, SEND_GROUP, SEND_IDENTIFY)}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        values = super().action_message(integration=integration, action=action, values=values)
        if not values.get("userId") and not values.get("anonymousId"):
            raise MessageRefused("userId or anonymousId is required by Segment")
        return _segment_call(_CALL_TYPES[action.name], values)

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message.get("messageId", ""))

    def activity_message(self, *, integration: Integration, activity: ActivityRow) -> dict[str, Any]:
        """A track call for one activity (`integrations.delivery_store.ActivityRow`)."""
        return {
            "type": "track",
            "event": EVENT_NAMES[activity.kind],
            "userId": user_id(integration, activity),
            "messageId": activity.id,
            "timestamp": activity.timestamp,
            "properties": {"activity": activity.kind, **activity.properties},
            "context": {"library": LIBRARY},
        }

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        return {
            "type": "track",
            "event": TEST_EVENT,
            "userId": "hub-test-user",
            "messageId": message_id,
            "timestamp": iso_ms(timezone.now()),
            "properties": {"integration": integration.name, "test": True},
            "context": {"library": LIBRARY},
        }

    def batch_overhead(self) -> int:
        return len(b'{"batch":[],"sentAt":"2000-01-01T00:00:00.000Z"}') + 8

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        sent_at = orjson.dumps(iso_ms(timezone.now()))
        body = b'{"batch":[' + b",".join(messages) + b'],"sentAt":' + sent_at + b"}"
        return BatchRequest(
            url=base_url(integration) + "/v1/batch",
            body=body,
            headers={"Content-Type": "application/json"},
            auth=(integration.write_key, ""),
        )
