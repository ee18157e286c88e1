"""Inbound wire formats: each turns one received item into a Segment-spec message, or says why not.

A format is a class behind the `InboundFormat` interface, kept in its platform's vendor module
(`integrations/vendors/`) and registered by kind through `vendor_register`. The webhook URL takes
whatever a registered format accepts (`format_detect`); the tracking API is Segment's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class Received:
    """One received item: the normalized message (a dict) or the reason it was rejected."""

    format: str
    message: Any
    message_id: str = ""
    type: str = ""
    event: str = ""
    error: str = ""


class InboundFormat(Protocol):
    kind: str

    def accepts(self, item: Any) -> bool:
        """Whether a webhook item is in this format."""

    def normalize(self, item: Any, *, received_at: str, defaults: dict | None = None) -> Received:
        """The Segment-spec message of one item (validated), or a Received with `error` set."""


_REGISTRY: dict[str, InboundFormat] = {}


def format_register(fmt: InboundFormat) -> None:
    _REGISTRY[fmt.kind] = fmt


def format_for(kind: str) -> InboundFormat:
    """The format registered as `kind` (KeyError for an unknown one)."""
    return _REGISTRY[kind]


def format_detect(item: Any) -> InboundFormat:
    """The format a webhook item is in: the first registered one that accepts it, else Segment's."""
    for fmt in _REGISTRY.values():
        if fmt.kind != "segment" and fmt.accepts(item):
            return fmt
    return _REGISTRY["segment"]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class CompatibleFormat:
    """The body of a vendor-compatible ingest endpoint (Metronome's, Kable's), one event each:
    kept as sent (so the debugger, the mapping editor's suggestions and the mappings see the
    vendor's own field names), with the hub's `type` ("track"), `messageId` (the vendor's id
    field: the dedupe key) and `receivedAt` added.

    Only their own endpoints use these formats (which check the whole request first, all or
    nothing, in the vendor's error shape); a webhook item is never taken for one of them."""

    kind = ""
    id_field = ""

    def accepts(self, item: Any) -> bool:
        return False

    def event_name(self, item: dict) -> Any:
        """The event's name as the debugger lists it (anything but text lists none)."""
        raise NotImplementedError

    def normalize(self, item: Any, *, received_at: str, defaults: dict | None = None) -> Received:
        if not isinstance(item, dict):
            return Received(self.kind, item, error="each event must be a JSON object")
        message_id = _text(item.get(self.id_field))
        message = {**item, "type": "track", "messageId": message_id, "receivedAt": received_at}
        out = Received(self.kind, message, message_id=message_id[:255], type="track")
        out.event = _text(self.event_name(item))[:255]
        if not message_id.strip():
            out.error = f"{self.id_field} is required (a non-empty string)"
        return out
