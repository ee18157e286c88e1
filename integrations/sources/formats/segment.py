"""Segment's spec messages (the HTTP Tracking API, Classic and Actions webhooks).

Checks Segment's rules: a known `type`; `userId` or `anonymousId`; `event` for track, `groupId` for
group, `previousId` for alias; a `messageId` under 100 characters (one is made when absent).
"""

from __future__ import annotations

import uuid
from typing import Any

from . import Received, format_register

TYPES = ("track", "identify", "group", "page", "screen", "alias")
MAX_MESSAGE_ID = 100
REQUIRED_BY_TYPE = {"track": "event", "group": "groupId", "alias": "previousId"}


def _present(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


class SegmentFormat:
    kind = "segment"

    def accepts(self, item: Any) -> bool:
        return isinstance(item, dict) and item.get("type") in TYPES

    def normalize(self, item: Any, *, received_at: str, defaults: dict | None = None) -> Received:
        if not isinstance(item, dict):
            return Received(self.kind, item, error="each message must be a JSON object")
        message = dict(item)
        if defaults:
            for key, value in defaults.items():
                if key == "context" and isinstance(value, dict) and isinstance(message.get("context"), dict):
                    message["context"] = {**value, **message["context"]}
                else:
                    message.setdefault(key, value)
        message.pop("writeKey", None)
        kind = message.get("type")
        message_id = message.get("messageId")
        if message_id is None:
            message_id = message["messageId"] = f"hub-{uuid.uuid4()}"
        out = Received(self.kind, message, message_id=_text(message_id)[:255], type=_text(kind)[:30])
        out.event = _text(message.get("event") or message.get("name"))[:255]
        message["receivedAt"] = received_at
        if kind not in TYPES:
            out.error = f"type must be one of {', '.join(TYPES)}"
        elif not isinstance(message_id, str) or not message_id.strip():
            out.error = "messageId must be a non-empty string"
        elif len(message_id) >= MAX_MESSAGE_ID:
            out.error = f"messageId must be under {MAX_MESSAGE_ID} characters"
        elif not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
            out.error = "userId or anonymousId is required"
        elif kind in REQUIRED_BY_TYPE and not _present(message.get(REQUIRED_BY_TYPE[kind])):
            out.error = f"{REQUIRED_BY_TYPE[kind]} is required for {kind}"
        elif kind == "track" and not isinstance(message.get("event"), str):
            out.error = "event must be a string"
        else:
            for key in ("properties", "traits", "context"):
                if key in message and not isinstance(message[key], dict | None):
                    out.error = f"{key} must be an object"
                    break
        return out


format_register(SegmentFormat())
