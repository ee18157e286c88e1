"""Connectors: each destination's wire format behind one small interface, found by kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hub.models import Activity


@dataclass(frozen=True)
class BatchRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    auth: tuple[str, str] | None


class Connector(Protocol):
    kind: str
    max_message_bytes: int
    max_batch_bytes: int
    max_batch_messages: int

    def message(self, *, integration: Any, activity: Activity) -> dict[str, Any]:
        """The destination's message for one activity (stable across retries)."""

    def test_message(self, *, integration: Any, message_id: str) -> dict[str, Any]:
        """A harmless message for Send test event."""

    def batch_request(self, *, integration: Any, messages: list[bytes]) -> BatchRequest:
        """The request carrying these serialized messages."""

    def batch_overhead(self) -> int:
        """Bytes a batch adds around its messages (for the size limit)."""


_REGISTRY: dict[str, Connector] = {}


def connector_register(connector: Connector) -> None:
    _REGISTRY[connector.kind] = connector


def connector_for(kind: str) -> Connector:
    """The connector of an integration kind (KeyError for an unknown kind)."""
    return _REGISTRY[kind]


from . import segment  # noqa: E402,F401  (registers itself)
