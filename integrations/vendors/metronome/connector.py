"""Metronome's ingest API: usage events as `POST /v1/ingest`, a JSON array of 1 to 100 events
`{transaction_id, customer_id, timestamp, event_type, properties}` with a Bearer token.

Defaults as Segment's Metronome (Actions) sendEvent and seed 001: transaction_id from the event
id (Segment's messageId), customer_id from `context.groupId`, event_type from the event name.
Metronome ignores a transaction_id it saw in the last 34 days, so a resend is harmless; it answers
400 to a malformed batch (permanent), 401/403 to a bad token, 429 and 5xx to retry later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from integrations.connectors import Action, BaseConnector, BatchRequest
from integrations.delivery_rows import iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

HOST = "https://api.metronome.com"

SEND_EVENT = Action(
    name="sendEvent",
    label="Send event",
    item_kind="usage_event",
    trigger='type = "track"',
    fields={
        "transaction_id": {"path": "$.messageId"},
        "customer_id": {"path": "$.context.groupId"},
        "timestamp": {"path": "$.timestamp"},
        "event_type": {"path": "$.event"},
        "properties": {"path": "$.properties"},
    },
    targets=("transaction_id", "customer_id", "timestamp", "event_type", "properties"),
    required=("transaction_id", "customer_id", "timestamp", "event_type"),
)


class MetronomeConnector(BaseConnector):
    kind = "metronome"
    label = "Metronome"
    max_message_bytes = 64 * 1024
    max_batch_bytes = 4 * 1024 * 1024
    max_batch_messages = 100
    actions = {SEND_EVENT.name: SEND_EVENT}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        # properties: seed 001 requires it; Metronome takes an empty object.
        return self.usage_event_message(
            integration=integration, action=action, values=values, data="properties"
        )

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message["transaction_id"])  # text already (usage_event_message)

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        """A harmless event: Metronome accepts it and bills nothing unless a metric counts it."""
        return {
            "transaction_id": message_id,
            "customer_id": "hub-test-customer",
            "timestamp": iso_ms(timezone.now()),
            "event_type": "hub_test_event",
            "properties": {"integration": integration.name, "test": True},
        }

    def batch_overhead(self) -> int:
        return 2

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        base = integration.custom_host.rstrip("/") if integration.custom_host else HOST
        return BatchRequest(
            url=base + "/v1/ingest",
            body=b"[" + b",".join(messages) + b"]",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {integration.secret}"},
            auth=None,
        )
