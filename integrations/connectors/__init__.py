"""Connectors: each destination's wire format behind one small interface, found by kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class BatchRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    auth: tuple[str, str] | None


class Connector(Protocol):
    kind: str
    label: str
    max_message_bytes: int
    max_batch_bytes: int
    max_batch_messages: int

    def activity_message(self, *, integration: Any, activity: Any) -> dict[str, Any]:
        """The destination's message for one activity (an `ActivityRow`: the data as it was then)."""

    def test_message(self, *, integration: Any, message_id: str) -> dict[str, Any]:
        """A harmless message for Send test event."""

    def batch_request(self, *, integration: Any, messages: list[bytes]) -> BatchRequest:
        """The request carrying these serialized messages."""

    def batch_overhead(self) -> int:
        """Bytes a batch adds around its messages (for the size limit)."""

    def classify(self, status: int, body: bytes) -> str:
        """ "delivered", "retry" or "failed" for an HTTP answer."""

    def needs_attention(self, status: int) -> bool:
        """Whether an answer means the credentials need a person (the integration is flagged)."""


class BaseConnector:
    """Defaults most destinations share: 2xx delivered; 408, 423, 429 and 5xx but 501 retried
    (Segment's actions framework); anything else failed; 401 and 403 need attention."""

    def classify(self, status: int, body: bytes) -> str:
        if 200 <= status < 300:
            return "delivered"
        if status in (408, 423, 429) or (status >= 500 and status != 501):
            return "retry"
        return "failed"

    def needs_attention(self, status: int) -> bool:
        return status in (401, 403)


_REGISTRY: dict[str, Connector] = {}


def connector_register(connector: Connector) -> None:
    _REGISTRY[connector.kind] = connector


def connector_for(kind: str) -> Connector:
    """The connector of an integration kind (KeyError for an unknown kind)."""
    return _REGISTRY[kind]


from . import segment  # noqa: E402,F401  (registers itself)
