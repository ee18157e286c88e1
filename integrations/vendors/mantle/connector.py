"""Mantle's App API (REFERENCE section 1; Segment's Mantle (Actions)): usage events to
`POST {base}/usage_events` as `{"events": [...]}` and customers to `POST {base}/identify`, with
`X-Mantle-App-Id` and `X-Mantle-App-Api-Key`. The base defaults to Mantle's; another hub's `/v1`
works too, so one hub can feed a Mantle account or another hub.

Defaults as Segment's action code: pushEvent (event_name, event_id from the messageId,
properties, timestamp; Segment has no default customerId, the hub maps the customer's platform
id), identify (platformId, myshopifyDomain, name, email, platformPlanName, customFields, and the
one contact only when its email and role are both there). The hub offers identify on customer
changes (group calls of the shop); see docs/destinations.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from integrations.connectors import Action, BaseConnector, BatchRequest, MessageRefused
from integrations.delivery_rows import iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

HOST = "https://appapi.heymantle.com/v1"

PUSH_EVENT = Action(
    name="pushEvent",
    label="Push event",
    item_kind="usage_event",
    trigger='type = "track"',
    fields={
        "customerId": {"path": "$.customer.platformId"},
        "event_name": {"path": "$.event"},
        "event_id": {"path": "$.messageId"},
        "properties": {"path": "$.properties"},
        "timestamp": {"path": "$.timestamp"},
    },
    targets=("customerId", "event_name", "event_id", "properties", "timestamp"),
    required=("customerId", "event_name"),
)
IDENTIFY = Action(
    name="identify",
    label="Identify",
    item_kind="customer",
    trigger='type = "group"',
    fields={
        "platform": {"path": "$.traits.platform"},
        "platformId": {"path": "$.traits.platformId"},
        "myshopifyDomain": {"path": "$.traits.myshopifyDomain"},
        "name": {"path": "$.traits.name"},
        "email": {"path": "$.traits.email"},
        "platformPlanName": {"path": "$.traits.platformPlanName"},
        "customFields": {"path": "$.traits.customFields"},
        "contactName": {"path": "$.traits.contact_name"},
        "contactEmail": {"path": "$.traits.contact_email"},
        "contactPhone": {"path": "$.traits.contact_phone"},
        "contactRole": {"path": "$.traits.contact_role"},
    },
    targets=(
        "platform",
        "platformId",
        "myshopifyDomain",
        "name",
        "email",
        "platformPlanName",
        "customFields",
        "contactName",
        "contactEmail",
        "contactPhone",
        "contactRole",
    ),
    required=("platformId",),
)


class MantleConnector(BaseConnector):
    kind = "mantle"
    label = "Mantle"
    max_message_bytes = 64 * 1024
    max_batch_bytes = 1024 * 1024
    max_batch_messages = 500
    actions = {PUSH_EVENT.name: PUSH_EVENT, IDENTIFY.name: IDENTIFY}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        values = super().action_message(integration=integration, action=action, values=values)
        if action is PUSH_EVENT:
            # Segment's pushEvent's keys, in its order; properties `{}` when there are none.
            properties = values.get("properties")
            if properties is not None and not isinstance(properties, dict):
                raise MessageRefused("properties must be an object")
            message = {"event_name": values["event_name"]}
            if values.get("event_id"):
                message["event_id"] = values["event_id"]
            message["customerId"] = str(values["customerId"])
            message["properties"] = properties or {}
            if values.get("timestamp"):
                message["timestamp"] = values["timestamp"]
            return message
        # Segment's identify posts `platform: "shopify"` always; the hub the customer's platform.
        message = {"platform": values.get("platform") or "shopify"}
        fields = ("platformId", "myshopifyDomain", "name", "email", "platformPlanName", "customFields")
        message.update({t: values[t] for t in fields if values.get(t) is not None})
        if values.get("contactEmail") and values.get("contactRole"):
            contact = {"email": values["contactEmail"], "label": values["contactRole"]}
            for key, target in (("name", "contactName"), ("phone", "contactPhone")):
                if values.get(target):
                    contact[key] = values[target]
            message["contacts"] = [contact]
        return message

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message.get("event_id") or message.get("platformId") or "")

    def batch_size(self, integration: Integration) -> int:
        return self.max_batch_messages

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        return {
            "customerId": "hub-test-customer", "event_name": "hub_test_event", "event_id": message_id,
            "properties": {"integration": integration.name, "test": True},
            "timestamp": iso_ms(timezone.now()),
        }  # fmt: skip

    def batch_overhead(self) -> int:
        return len(b'{"events":[]}')

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        base = integration.custom_host.rstrip("/") if integration.custom_host else HOST
        headers = {
            "Content-Type": "application/json",
            "X-Mantle-App-Id": str((integration.config or {}).get("app_id", "")),
            "X-Mantle-App-Api-Key": integration.secret,
        }
        if action == IDENTIFY.name:
            # Mantle's identify takes one customer a request.
            return BatchRequest(url=base + "/identify", body=messages[0], headers=headers, auth=None)
        body = b'{"events":[' + b",".join(messages) + b"]}"
        return BatchRequest(url=base + "/usage_events", body=body, headers=headers, auth=None)
