"""Mantle. Out: usage events (pushEvent) and customers (identify) to a Mantle App API
(`connector.py`). In, as the hub's sources know it: the preset of Segment's Mantle (Actions) pushEvent
(seed 000): Track → usage event, `event` → Event Name, `properties.shop` → Customer ID,
`messageId` → Event ID.

Mantle's own API (`POST /v1/usage_events`) is the hub's native ingest, in `events/api.py`: the
events layer, which does not import `integrations`.
"""

from __future__ import annotations

from integrations.sources.presets import Preset, path

from .. import Vendor, vendor_register
from .connector import MantleConnector

TRACK = Preset(
    key="mantle_track",
    name="Mantle: Track → usage event",
    trigger='type = "track"',
    action="usage_event",
    fields={
        "event_name": path("$.event"),
        "customer_id": path("$.properties.shop"),
        "event_id": path("$.messageId"),
        "timestamp": path("$.timestamp"),
        "properties": path("$.properties"),
    },
    description="Segment's Mantle (Actions) pushEvent, with properties.shop as the customer.",
)

vendor_register(Vendor(key="mantle", label="Mantle", presets=(TRACK,), connector=MantleConnector()))
