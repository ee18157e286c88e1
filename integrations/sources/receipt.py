"""Receipt into the inbox: every received message is committed before the sender gets its 2xx,
with an `InboxBatch` of the request's pending messages in the same statement, and a drain task is
asked for after the commit (`processing.py` does the work). Invalid messages are kept as
`rejected` with the reason, for the debugger. The message id is the default event id, so storing
a message again never makes a second usage event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hub.task_coalescing import CoalescedTask

from .formats import Received, format_detect, format_for
from .inbox_store import InboxRow, store
from .models import InboxMessage, Source
from .processing import messages_process

DRAIN_TASK = "sources.inbox_drain"

# Receipts ask for a drain after they commit: one task a process every few milliseconds, not one
# per request (the sweep is the backstop for a process that dies before sending it). By name: the
# tasks module imports the processing, not the other way round.
inbox_drain_soon = CoalescedTask(DRAIN_TASK)


@dataclass
class Receipt:
    """What a request delivered: how many messages were kept, and each rejected one with why."""

    accepted: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"success": True, "accepted": self.accepted}
        if self.rejected:
            body["rejected"] = self.rejected
        return body


def _stub(received: Received) -> dict[str, object]:
    """What is kept of a rejected message: a few fields, without NUL (PostgreSQL's jsonb holds none)."""
    message = received.message
    if isinstance(message, dict):
        return {k: _without_nul(message[k]) for k in ("type", "messageId", "event", "userId") if k in message}
    return {}


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def inbox_receive(
    *,
    source: Source,
    items: list[object],
    format_kind: str | None = None,
    defaults: dict[str, object] | None = None,
) -> Receipt:
    """Validate each item in its format and commit all to the inbox (rejected ones with the reason).

    `format_kind=None` detects each item's format (webhooks). Enqueues processing after commit.
    """
    receipt, rows, received_at = _receipt_rows(
        source=source, items=items, format_kind=format_kind, defaults=defaults
    )
    store().rows_insert(source.pk, rows, received_at, batched=True)
    if receipt.accepted:
        transaction.on_commit(inbox_drain_soon)
    return receipt


def inbox_receive_inline(*, source: Source, items: list[object], format_kind: str) -> list[str]:
    """Commit the items to the inbox and run the source's mappings over them in the same
    transaction, so what they make is stored before the caller answers; each message's outcome.

    For the synchronous Metronome- and Kable-compatible endpoints: the rows are invisible to the
    workers until they are processed, and a database error stores nothing (the client retries).
    """
    _, rows, received_at = _receipt_rows(source=source, items=items, format_kind=format_kind)
    with transaction.atomic():
        ids = store().rows_insert(source.pk, rows, received_at, batched=False)
        pending = [
            (row_id, source.pk, row.message)
            for row_id, row in zip(ids, rows, strict=True)
            if row.status == InboxMessage.Status.PENDING
        ]
        outcomes = dict(messages_process(pending, sources={source.pk: source}))
    return [outcomes.get(row_id, InboxMessage.Outcome.REJECTED) for row_id in ids]


def inbox_refuse(*, source: Source, items: list[object], format_kind: str, reason: str) -> None:
    """Record refused items as rejected with `reason` (a request refused as a whole), for the debugger;
    without items (a body unread, or not JSON), one row stands for the request."""
    _, rows, received_at = _receipt_rows(
        source=source, items=items or [{}], format_kind=format_kind, refused=reason
    )
    if not items:
        rows[0].error = reason
    store().rows_insert(source.pk, rows, received_at, batched=False)


def _receipt_rows(
    *,
    source: Source,
    items: list[object],
    format_kind: str | None,
    defaults: dict[str, object] | None = None,
    refused: str = "",
) -> tuple[Receipt, list[InboxRow], datetime]:
    max_bytes = settings.HUB_SOURCE_MESSAGE_MAX_BYTES
    received_at = timezone.now()
    stamp = received_at.isoformat().replace("+00:00", "Z")
    fmt = format_for(format_kind) if format_kind else None
    receipt = Receipt()
    rows = []
    status: str
    outcome: str
    for index, item in enumerate(items):
        received = (fmt or format_detect(item)).normalize(item, received_at=stamp, defaults=defaults)
        payload = b"{}"
        if not received.error:
            try:
                payload = orjson.dumps(received.message)
            except TypeError as exc:
                received.error = f"the message cannot be stored: {exc}"
            else:
                if len(payload) > max_bytes:
                    received.error = f"the message is {len(payload)} bytes; at most {max_bytes} are allowed"
                elif b"\\u0000" in payload:
                    received.error = "strings may not contain the NUL character"
        if refused:
            # The request's reason first: it is why this message was refused.
            received.error = f"{refused} (this message: {received.error})" if received.error else refused
        if received.error:
            payload = orjson.dumps(_stub(received))
            receipt.rejected.append(
                {"index": index, "messageId": received.message_id, "reason": received.error}
            )
            status, outcome = InboxMessage.Status.REJECTED, InboxMessage.Outcome.REJECTED
        else:
            receipt.accepted += 1
            status, outcome = InboxMessage.Status.PENDING, ""
        rows.append(
            InboxRow(
                received.format,
                received.message_id.replace("\x00", ""),
                received.type.replace("\x00", ""),
                received.event.replace("\x00", ""),
                payload.decode(),
                status,
                outcome,
                received.error,
                received.message,
            )
        )
    return receipt, rows, received_at
