"""The Metronome- and Kable-compatible ingest bodies, one event each: kept as sent (so the debugger,
the mapping editor's suggestions and the mappings see the vendor's own field names), with the
hub's `type` ("track"), `messageId` (the transaction id: the dedupe key) and `receivedAt` added.

Only their own endpoints use these formats (which check the whole request first, all or nothing,
in the vendor's error shape); a webhook item is never taken for one of them.
"""

from __future__ import annotations

from typing import Any

from . import Received, format_register

KABLE_EVENT_NAME_KEYS = ("eventName", "event_name", "event", "eventType")
KABLE_DEFAULT_EVENT_NAME = "kable_event"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def kable_event_name(data: Any) -> str:
    """Kable's event name: `data.eventName`, `event_name`, `event` or `eventType`, else kable_event."""
    if isinstance(data, dict):
        for key in KABLE_EVENT_NAME_KEYS:
            if isinstance(data.get(key), str) and data[key]:
                return data[key]
    return KABLE_DEFAULT_EVENT_NAME


class _VendorFormat:
    kind = ""
    id_field = ""

    def accepts(self, item: Any) -> bool:
        return False

    def event_name(self, item: dict) -> str:
        raise NotImplementedError

    def normalize(self, item: Any, *, received_at: str, defaults: dict | None = None) -> Received:
        if not isinstance(item, dict):
            return Received(self.kind, item, error="each event must be a JSON object")
        message_id = _text(item.get(self.id_field))
        message = {**item, "type": "track", "messageId": message_id, "receivedAt": received_at}
        out = Received(self.kind, message, message_id=message_id[:255], type="track")
        out.event = self.event_name(item)[:255]
        if not message_id.strip():
            out.error = f"{self.id_field} is required (a non-empty string)"
        return out


class MetronomeFormat(_VendorFormat):
    kind = "metronome"
    id_field = "transaction_id"

    def event_name(self, item: dict) -> str:
        return _text(item.get("event_type"))


class KableFormat(_VendorFormat):
    kind = "kable"
    id_field = "transactionId"

    def event_name(self, item: dict) -> str:
        return kable_event_name(item.get("data"))


format_register(MetronomeFormat())
format_register(KableFormat())
