"""ChartMogul's CRM webhook (seed 004, Segment's ChartMogul (Actions)): the customer pastes the
webhook URL ChartMogul gives (the URL is the credential: stored encrypted as the secret);
customers go as "Send Customer" and contacts as "Send Contact", one JSON object per request,
with the seed's fields.

Defaults as Segment's action code: sendCustomer on group calls (a hub customer change), sendContact
on identify calls (a contact change, its customer as the company). A contact without a user id
is refused, a company without an id is left out, and a contact carrying nothing of interest
(five fields or fewer) is refused, as Segment's action does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.utils import timezone

from integrations.connectors import Action, BaseConnector, BatchRequest, MessageRefused
from integrations.delivery_rows import iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

_COMMON = {
    "message_id": {"path": "$.messageId"},
    "timestamp": {"path": "$.timestamp"},
    "sent_at": {"path": "$.sentAt"},
    "user_id": {"path": "$.userId"},
}
SEND_CUSTOMER = Action(
    name="sendCustomer",
    label="Send customer",
    item_kind="customer",
    trigger='type = "group"',
    fields={
        "type": {"literal": "Send Customer"},
        **_COMMON,
        "group_id": {"path": "$.groupId"},
        "name": {"path": "$.traits.name"},
        "description": {"path": "$.traits.description"},
        "email": {"path": "$.traits.email"},
        "website": {"path": "$.traits.website"},
        "created_at": {"path": "$.traits.createdAt"},
        "address": {
            "object": {
                "street": {"path": "$.traits.address.street"},
                "city": {"path": "$.traits.address.city"},
                "state": {"path": "$.traits.address.state"},
                "postal_code": {"path": "$.traits.address.postalCode"},
                "country": {"path": "$.traits.address.country"},
            }
        },
    },
    targets=(
        "type",
        "message_id",
        "timestamp",
        "sent_at",
        "user_id",
        "group_id",
        "name",
        "description",
        "email",
        "website",
        "created_at",
        "address",
    ),
    required=("type", "message_id", "timestamp", "sent_at", "user_id", "group_id"),
)
SEND_CONTACT = Action(
    name="sendContact",
    label="Send contact",
    item_kind="contact",
    trigger='type = "identify"',
    fields={
        "type": {"literal": "Send Contact"},
        **_COMMON,
        "anonymous_id": {"path": "$.anonymousId"},
        "email": {"path": "$.traits.email"},
        "first_name": {"path": "$.traits.first_name"},
        "last_name": {"path": "$.traits.last_name"},
        "name": {"path": "$.traits.name"},
        "title": {"path": "$.traits.title"},
        "phone": {"path": "$.traits.phone"},
        "linked_in": {"path": "$.traits.linkedIn"},
        "twitter": {"path": "$.traits.twitter"},
        "company": {
            "object": {"id": {"path": "$.traits.company.id"}, "name": {"path": "$.traits.company.name"}}
        },
    },
    targets=(
        "type",
        "message_id",
        "timestamp",
        "sent_at",
        "user_id",
        "anonymous_id",
        "email",
        "first_name",
        "last_name",
        "name",
        "title",
        "phone",
        "linked_in",
        "twitter",
        "company",
    ),
    required=("type", "message_id", "timestamp", "sent_at"),
)


class ChartMogulConnector(BaseConnector):
    kind = "chartmogul"
    label = "ChartMogul"
    max_message_bytes = 64 * 1024
    max_batch_bytes = 64 * 1024
    max_batch_messages = 1
    actions = {SEND_CUSTOMER.name: SEND_CUSTOMER, SEND_CONTACT.name: SEND_CONTACT}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        values = super().action_message(integration=integration, action=action, values=values)
        # An address none of whose parts is there stays `{}`, as Segment's action posts it.
        message = {t: values[t] for t in action.targets if t in values and values[t] is not None}
        if action is SEND_CONTACT:
            if not message.get("user_id") and not message.get("anonymous_id"):
                raise MessageRefused("the user_id and/or anonymous_id must be present")
            if isinstance(message.get("company"), dict) and not message["company"].get("id"):
                del message["company"]
            if len(message) <= 5:
                raise MessageRefused("the contact carries no information of interest to ChartMogul")
        return message

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message.get("message_id", ""))

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        now = iso_ms(timezone.now())
        return {
            "type": "Send Customer", "message_id": message_id, "timestamp": now, "sent_at": now,
            "user_id": "hub-test-customer", "group_id": "hub-test-customer", "name": "Hub test customer",
        }  # fmt: skip

    def batch_overhead(self) -> int:
        return 0

    def redact(self, integration: Integration, text: str) -> str:
        """The webhook URL is the credential: the delivery log shows its host only."""
        parts = urlsplit(integration.secret or "")
        secret = parts.path + (("?" + parts.query) if parts.query else "")
        return text.replace(secret, "/••••") if secret.strip("/") else text

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        return BatchRequest(
            url=integration.secret,
            body=messages[0],
            headers={"Content-Type": "application/json"},
            auth=None,
        )
