"""ChartMogul, as Segment's ChartMogul (Actions) destination speaks it.

Out: Send Customer and Send Contact to the webhook URL a user pastes (`connector.py`).

In: the payloads it posts to a webhook URL (`Send Contact`, `Send Customer`), turned back into
Segment identify and group messages, so the same mappings serve both; the presets are Send
Contact's and Send Customer's default fields (seed 004): identify → contact (the contact's company,
`traits.company.id`, is its customer) and group → customer.
"""

from __future__ import annotations

from integrations.sources import openapi
from integrations.sources.formats import Received
from integrations.sources.presets import Preset, path

from .. import OpenApiFragment, Vendor, vendor_register
from ..segment import MESSAGE_ID_SCHEMA, SegmentFormat
from .connector import ChartMogulConnector

_CONTACT_TRAITS = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "name": "name",
    "title": "title",
    "phone": "phone",
    "linked_in": "linkedIn",
    "twitter": "twitter",
    "company": "company",
}
_CUSTOMER_TRAITS = {
    "name": "name",
    "description": "description",
    "email": "email",
    "website": "website",
    "created_at": "createdAt",
}
_ADDRESS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "postalCode",
    "country": "country",
}
_COMMON = {"message_id": "messageId", "timestamp": "timestamp", "sent_at": "sentAt", "user_id": "userId"}


def _copy(item: dict, names: dict[str, str]) -> dict:
    return {to: item[frm] for frm, to in names.items() if frm in item}


class ChartMogulFormat:
    kind = "chartmogul"
    TYPES = {"Send Contact": "identify", "Send Customer": "group"}

    def accepts(self, item: object) -> bool:
        return isinstance(item, dict) and isinstance(item.get("type"), str) and item["type"] in self.TYPES

    def normalize(self, item: object, *, received_at: str, defaults: dict | None = None) -> Received:
        if not self.accepts(item) or not isinstance(item, dict):  # (only detection calls it today)
            return Received(self.kind, item, error="not a ChartMogul Send Contact or Send Customer event")
        kind = self.TYPES[item["type"]]
        message = {"type": kind, **_copy(item, _COMMON), "receivedAt": received_at}
        if kind == "identify":
            if "anonymous_id" in item:
                message["anonymousId"] = item["anonymous_id"]
            message["traits"] = _copy(item, _CONTACT_TRAITS)
        else:
            message["groupId"] = item.get("group_id")
            traits = _copy(item, _CUSTOMER_TRAITS)
            if isinstance(item.get("address"), dict):
                traits["address"] = _copy(item["address"], _ADDRESS)
            message["traits"] = traits
        received = SegmentFormat().normalize(message, received_at=received_at)
        received.format = self.kind
        received.event = item["type"]
        return received


CONTACT = Preset(
    key="chartmogul_contact",
    name="ChartMogul: Identify → contact",
    trigger='type = "identify"',
    action="contact",
    fields={
        "customer_id": {"coalesce": [path("$.traits.company.id"), path("$.context.groupId")]},
        "email": path("$.traits.email"),
        "name": {
            "coalesce": [
                path("$.traits.name"),
                {"template": "{{traits.first_name}} {{traits.last_name}}"},
            ]
        },
        "phone": path("$.traits.phone"),
        "label": path("$.traits.title"),
    },
    description="Send Contact: the contact's company (traits.company.id) is its customer.",
)

CUSTOMER = Preset(
    key="chartmogul_customer",
    name="ChartMogul: Group → customer",
    trigger='type = "group"',
    action="customer",
    fields={
        "platform_id": path("$.groupId"),
        "name": path("$.traits.name"),
        "email": path("$.traits.email"),
        "platform_plan_name": path("$.traits.plan"),
        "created_at": path("$.traits.createdAt"),
        "custom_fields": {
            "object": {
                "website": path("$.traits.website"),
                "description": path("$.traits.description"),
                "address": path("$.traits.address"),
            }
        },
    },
    description="Send Customer: the group is the customer.",
)


def _openapi_schemas() -> dict[str, dict]:
    text = openapi.TEXT
    return {
        "ChartMogulPayload": {
            "type": "object",
            "description": "What Segment's ChartMogul (Actions) destination posts.",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": list(ChartMogulFormat.TYPES)},
                "message_id": MESSAGE_ID_SCHEMA,
                "timestamp": text,
                "sent_at": text,
                "user_id": text,
                "anonymous_id": text,
                "group_id": text,
                "email": text,
                "name": text,
                "company": {"type": "object"},
                "address": {"type": "object"},
            },
        },
    }


vendor_register(
    Vendor(
        key="chartmogul",
        label="ChartMogul",
        formats=(ChartMogulFormat(),),
        presets=(CONTACT, CUSTOMER),
        openapi=OpenApiFragment(schemas=_openapi_schemas, webhook_items=("ChartMogulPayload",)),
        connector=ChartMogulConnector(),
    )
)
