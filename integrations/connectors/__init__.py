"""Connectors: each destination's wire format behind one small interface, found by kind.

The connectors themselves live with their platforms in `integrations/vendors/` and are registered
by `vendor_register`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from integrations.delivery_rows import ActivityRow
    from integrations.models import Integration


@dataclass(frozen=True)
class BatchRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    auth: tuple[str, str] | None


@dataclass(frozen=True)
class Action:
    """Something a destination does with an item (Metronome's sendEvent...): the item kind it
    takes, its default trigger and mapping (the sources' value specs, as Segment's action code
    defaults them), the targets a mapping may fill and those a message needs."""

    name: str
    label: str
    item_kind: str
    trigger: str
    fields: dict[str, Any]
    targets: tuple[str, ...]
    required: tuple[str, ...] = ()


class Connector(Protocol):
    kind: str
    label: str
    max_message_bytes: int
    max_batch_bytes: int
    max_batch_messages: int

    def activity_message(self, *, integration: Integration, activity: ActivityRow) -> dict[str, Any]:
        """The destination's message for one activity (an `ActivityRow`: the data as it was then)."""

    def test_message(self, *, integration: Integration, message_id: str) -> dict[str, Any]:
        """A harmless message for Send test event."""

    def batch_request(
        self, *, integration: Integration, messages: list[bytes], action: str = ""
    ) -> BatchRequest:
        """The request carrying these serialized messages."""

    def batch_overhead(self) -> int:
        """Bytes a batch adds around its messages (for the size limit)."""

    def batch_size(self, integration: Integration) -> int:
        """The most messages one request of this integration carries."""

    def classify(self, status: int, body: bytes) -> str:
        """ "delivered", "retry" or "failed" for an HTTP answer."""

    # Destinations of items other than activities (absent on Segment's activity-only connector).
    actions: dict[str, Action]

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The wire message of one item from its mapped values (MessageRefused when it cannot be sent)."""

    def message_id(self, message: dict[str, Any]) -> str:
        """The message's own dedupe key (Metronome's transaction_id, a webhook id...)."""

    def needs_attention(self, status: int) -> bool:
        """Whether an answer means the credentials need a person (the integration is flagged)."""

    def redact(self, integration: Integration, text: str) -> str:
        """`text` (a URL, an error) as the delivery log may show it: credentials in URLs masked."""


class MessageRefused(ValueError):
    """A mapped item that makes no valid message for the destination (a required field is missing)."""


class BaseConnector:
    """Defaults most destinations share: 2xx delivered; 408, 423, 429 and 5xx but 501 retried
    (Segment's actions framework); anything else failed; 401 and 403 need attention."""

    # Declared by each connector (see `Connector`).
    kind: str
    label: str
    max_message_bytes: int
    max_batch_bytes: int
    max_batch_messages: int

    def classify(self, status: int, body: bytes) -> str:
        if 200 <= status < 300:
            return "delivered"
        if status in (408, 423, 429) or (status >= 500 and status != 501):
            return "retry"
        return "failed"

    def needs_attention(self, status: int) -> bool:
        return status in (401, 403)

    actions: dict[str, Action] = {}

    def batch_size(self, integration: Integration) -> int:
        return self.max_batch_messages

    def redact(self, integration: Integration, text: str) -> str:
        """`text` (a URL, an error) as the delivery log may show it: credentials in URLs masked."""
        return text

    def activity_message(self, *, integration: Integration, activity: ActivityRow) -> dict[str, Any]:
        """Only Segment takes activities; the fan-out never asks another destination for one."""
        raise MessageRefused("this destination takes no activities")

    def action_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any]
    ) -> dict[str, Any]:
        missing = [t for t in action.required if values.get(t) in (None, "")]
        if missing:
            raise MessageRefused(f"{', '.join(missing)} missing after the mapping")
        return values

    def usage_event_message(
        self, *, integration: Integration, action: Action, values: dict[str, Any], data: str
    ) -> dict[str, Any]:
        """A billing platform's event from mapped values: the action's targets, the required ones
        as text, and `data` (the event's properties) an object, `{}` when the mapping left it out."""
        values = BaseConnector.action_message(self, integration=integration, action=action, values=values)
        message = {t: values[t] for t in action.targets if t in values}
        for name in action.required:
            if not isinstance(message[name], str):
                message[name] = str(message[name])
        if message.get(data) is None:
            message[data] = {}
        elif not isinstance(message[data], dict):
            raise MessageRefused(f"{data} must be an object")
        return message


_REGISTRY: dict[str, Connector] = {}


def connector_register(connector: Connector) -> None:
    _REGISTRY[connector.kind] = connector


def connector_for(kind: str) -> Connector:
    """The connector of an integration kind (KeyError for an unknown kind)."""
    return _REGISTRY[kind]
