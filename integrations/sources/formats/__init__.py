"""Inbound wire formats: each turns one received item into a Segment-spec message, or says why not.

A format is one module behind the `InboundFormat` interface, registered by kind. The webhook URL
takes whatever a registered format accepts (`format_detect`); the tracking API is Segment's own.
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


from . import chartmogul, segment, vendor  # noqa: E402,F401  (each registers itself)
