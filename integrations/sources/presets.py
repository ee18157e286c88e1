"""Mapping presets, as the seeds set them up in Segment (REFERENCE §1, §2).

- Mantle: Track → usage event; `event` → Event Name, `properties.shop` → Customer ID,
  `messageId` → Event ID (seed 000).
- Metronome: Segment's defaults of Send Event; the customer is `context.groupId` (seed 001).
- Kable: the Client ID Field (dot notation, default `userId`) and Properties Mappings
  (`segmentX: kableX`, `nested.field: dimension`) (seed 002).
- ChartMogul: identify → contact and group → customer, with Send Contact / Send Customer's default
  fields (seed 004).
- Metronome- and Kable-compatible ingest: what a `metronome` or `kable` source starts with, the
  conversion those endpoints always made (transaction id → event id, customer, event name,
  timestamp, properties), now a mapping the user can edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    trigger: str
    action: str
    fields: dict[str, Any]
    description: str = ""


def _p(path: str) -> dict:
    return {"path": path}


MANTLE_TRACK = Preset(
    key="mantle_track",
    name="Mantle: Track → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        "event_name": _p("$.event"),
        "customer_id": _p("$.properties.shop"),
        "event_id": _p("$.messageId"),
        "timestamp": _p("$.timestamp"),
        "properties": _p("$.properties"),
    },
    description="Segment's Mantle (Actions) pushEvent, with properties.shop as the customer.",
)

METRONOME_TRACK = Preset(
    key="metronome_track",
    name="Metronome: Track → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        "event_id": _p("$.messageId"),
        "customer_id": _p("$.context.groupId"),
        "timestamp": _p("$.timestamp"),
        "event_name": _p("$.event"),
        "properties": _p("$.properties"),
    },
    description="Metronome (Actions) Send Event defaults: the customer is context.groupId.",
)


def kable_track(
    *, client_id_field: str = "userId", properties_mappings: dict[str, str] | None = None
) -> Preset:
    """Kable's settings: which field holds the client id, and property renames."""
    properties: dict[str, Any] = {"path": "$.properties"}
    if properties_mappings:
        properties["rename"] = dict(properties_mappings)
    return Preset(
        key="kable_track",
        name="Kable: Track → usage event",
        trigger='type = "track"',
        action="usage_event",
        fields={
            "event_name": _p("$.event"),
            "customer_id": _p("$." + client_id_field.removeprefix("$.")),
            "event_id": _p("$.messageId"),
            "timestamp": _p("$.timestamp"),
            "properties": properties,
        },
        description="Kable's Client ID Field (default userId) and Properties Mappings.",
    )


CHARTMOGUL_CONTACT = Preset(
    key="chartmogul_contact",
    name="ChartMogul: Identify → contact",
    trigger='type = "identify"',
    action="contact",
    fields={
        "customer_id": {"coalesce": [_p("$.traits.company.id"), _p("$.context.groupId")]},
        "email": _p("$.traits.email"),
        "name": {
            "coalesce": [
                _p("$.traits.name"),
                {"template": "{{traits.first_name}} {{traits.last_name}}"},
            ]
        },
        "phone": _p("$.traits.phone"),
        "label": _p("$.traits.title"),
    },
    description="Send Contact: the contact's company (traits.company.id) is its customer.",
)

CHARTMOGUL_CUSTOMER = Preset(
    key="chartmogul_customer",
    name="ChartMogul: Group → customer",
    trigger='type = "group"',
    action="customer",
    fields={
        "platform_id": _p("$.groupId"),
        "name": _p("$.traits.name"),
        "email": _p("$.traits.email"),
        "platform_plan_name": _p("$.traits.plan"),
        "created_at": _p("$.traits.createdAt"),
        "custom_fields": {
            "object": {
                "website": _p("$.traits.website"),
                "description": _p("$.traits.description"),
                "address": _p("$.traits.address"),
            }
        },
    },
    description="Send Customer: the group is the customer.",
)

METRONOME_INGEST = Preset(
    key="metronome_ingest",
    name="Metronome ingest → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        "event_id": _p("$.transaction_id"),
        "customer_id": _p("$.customer_id"),
        "event_name": _p("$.event_type"),
        "timestamp": _p("$.timestamp"),
        "properties": _p("$.properties"),
    },
    description="POST /metronome/v1/ingest: transaction_id, customer_id, event_type, timestamp, properties.",
)

KABLE_INGEST = Preset(
    key="kable_ingest",
    name="Kable events → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        "event_id": _p("$.transactionId"),
        "customer_id": _p("$.clientId"),
        "event_name": {
            "coalesce": [
                _p("$.data.eventName"),
                _p("$.data.event_name"),
                _p("$.data.event"),
                _p("$.data.eventType"),
                {"literal": "kable_event"},
            ]
        },
        "timestamp": _p("$.timestamp"),
        "properties": _p("$.data"),
    },
    description="POST /kable/api/v1/events/create: transactionId, clientId, data (and its event name).",
)

PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        MANTLE_TRACK,
        METRONOME_TRACK,
        kable_track(),
        CHARTMOGUL_CONTACT,
        CHARTMOGUL_CUSTOMER,
        METRONOME_INGEST,
        KABLE_INGEST,
    )
}
# What a new source starts with: Mantle's track mapping and ChartMogul's identify and group.
DEFAULT_PRESETS = ("mantle_track", "chartmogul_contact", "chartmogul_customer")
# What the app's Metronome and Kable sources start with.
VENDOR_PRESETS = {"metronome": ("metronome_ingest",), "kable": ("kable_ingest",)}


def preset_get(key: str, **options: Any) -> Preset:
    """A preset by key (KeyError for an unknown one); Kable's takes its settings as options."""
    if key == "kable_track":
        return kable_track(**options)
    return PRESETS[key]
