"""Signed webhooks (the Standard Webhooks spec, v1): the mapped data posted to the URL the user
gives, one message per request, or a JSON array of up to 100 with `config["batch"]`.

Each request carries `webhook-id`, `webhook-timestamp` (Unix seconds, of the send) and
`webhook-signature`: `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` with the `whsec_` secret,
and a second one with the previous secret while a rotation is under way. The id is derived from
the stored message bytes, so a resend of the same message carries the same id (the receiver's
idempotency key). Defaults as Segment's Webhook (Actions) send: the data is the whole event.
`config["headers"]` adds headers of the user's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from integrations.connectors import Action, BaseConnector, BatchRequest, MessageRefused
from integrations.delivery_rows import iso_ms

if TYPE_CHECKING:
    from integrations.models import Integration

SEND = Action(
    name="send",
    label="Send",
    item_kind="usage_event",
    trigger='type = "track"',
    fields={"data": {"path": "$"}},
    targets=("data",),
    required=("data",),
)
SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    """A new signing secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (ValueError for one that is not)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookConnector(BaseConnector):
    kind = "webhook"
    label = "Webhook"
    max_message_bytes = 256 * 1024
    max_batch_bytes = 1024 * 1024
    max_batch_messages = 100
    actions = {SEND.name: SEND}

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        values = super().action_message(integration=integration, action=action, values=values)
        data = values["data"]
        if not isinstance(data, dict):
            raise MessageRefused("data must be an object")
        return data

    def message_id(self, message: dict[str, Any]) -> str:
        return str(message.get("messageId") or message.get("id") or "")

    def batch_size(self, integration: Integration) -> int:
        return self.max_batch_messages if (integration.config or {}).get("batch") else 1

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        """A test message in the shape of a forwarded event."""
        return {
            "type": "track",
            "event": "Hub Test Event",
            "messageId": message_id,
            "timestamp": iso_ms(timezone.now()),
            "properties": {"integration": integration.name, "test": True},
        }

    def batch_overhead(self) -> int:
        return 2

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        body = messages[0] if len(messages) == 1 else b"[" + b",".join(messages) + b"]"
        msg_id = "msg_" + hashlib.blake2b(body, digest_size=16).hexdigest()
        timestamp = int(time.time())
        signatures = [signature(integration.secret, msg_id, timestamp, body)]
        if integration.previous_secret:
            signatures.append(signature(integration.previous_secret, msg_id, timestamp, body))
        headers = {str(k): str(v) for k, v in ((integration.config or {}).get("headers") or {}).items()}
        headers.update(
            {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": " ".join(signatures),
            }
        )
        return BatchRequest(url=integration.custom_host, body=body, headers=headers, auth=None)

    def classify(self, status: int, body: bytes) -> str:
        if status == 410:  # Gone: the receiver asks for no more
            return "failed"
        return super().classify(status, body)
