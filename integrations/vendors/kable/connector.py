"""Kable's events API: `POST /api/v1/events/create` with `KABLE-CLIENT-ID` and
`KABLE-CLIENT-SECRET`, a JSON array of `{clientId, timestamp, transactionId, data}`.

Seed 002's settings: the Client ID Field (dot notation, default the user id) and Properties
Mappings (`segmentX: kableX`), as the mapping's `clientId` path and `data` rename. Kable publishes
no limits beyond that: arrays of at most 500 events (its SDK's queue cap); 401/403 permanent (the
credentials need a person), 429 and 5xx retried. `config["environment"]` chooses the live or test
host; `transactionId` is the event id, so a resend is recognisably the same event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from integrations.connectors import Action, BaseConnector, BatchRequest
from integrations.delivery_rows import iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

HOSTS = {"live": "https://live.kable.io", "test": "https://test.kable.io"}

SEND_EVENT = Action(
    name="sendEvent",
    label="Send event",
    item_kind="usage_event",
    trigger='type = "track"',
    fields={
        "clientId": {"path": "$.userId"},
        "timestamp": {"path": "$.timestamp"},
        "transactionId": {"path": "$.messageId"},
        "data": {"path": "$.properties"},
    },
    targets=("clientId", "timestamp", "transactionId", "data"),
    required=("clientId", "timestamp", "transactionId"),
)


class KableConnector(BaseConnector):
    kind = "kable"
    label = "Kable"
    max_message_bytes = 64 * 1024
    max_batch_bytes = 4 * 1024 * 1024
    max_batch_messages = 500
    actions = {SEND_EVENT.name: SEND_EVENT}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        return self.usage_event_message(integration=integration, action=action, values=values, data="data")

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message["transactionId"])  # text already (usage_event_message)

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        """A harmless event for Send test event."""
        return {
            "clientId": "hub-test-customer",
            "timestamp": iso_ms(timezone.now()),
            "transactionId": message_id,
            "data": {"integration": integration.name, "test": True},
        }

    def batch_overhead(self) -> int:
        return 2

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        if integration.custom_host:
            base = integration.custom_host.rstrip("/")
        else:
            base = HOSTS.get((integration.config or {}).get("environment", "live"), HOSTS["live"])
        return BatchRequest(
            url=base + "/api/v1/events/create",
            body=b"[" + b",".join(messages) + b"]",
            headers={
                "Content-Type": "application/json",
                "KABLE-CLIENT-ID": str((integration.config or {}).get("client_id", "")),
                "KABLE-CLIENT-SECRET": integration.secret,
            },
            auth=None,
        )

    def classify(self, status: int, body: bytes) -> str:
        if status in (401, 403):
            return "failed"
        return super().classify(status, body)
