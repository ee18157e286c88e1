"""ChartMogul-shaped payloads (`Send Contact`, `Send Customer`), as Segment's ChartMogul (Actions)
destination posts them to a webhook URL: turned back into Segment identify and group messages, so
the same mappings (identify → contact, group → customer) serve both."""

from __future__ import annotations

from typing import Any

from . import Received, format_for, format_register

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

    def accepts(self, item: Any) -> bool:
        return isinstance(item, dict) and isinstance(item.get("type"), str) and item["type"] in self.TYPES

    def normalize(self, item: Any, *, received_at: str, defaults: dict | None = None) -> Received:
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
        received = format_for("segment").normalize(message, received_at=received_at)
        received.format = self.kind
        received.event = item["type"]
        return received


format_register(ChartMogulFormat())
