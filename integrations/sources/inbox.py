"""The inbox: every received message is committed here before the sender gets its 2xx; workers
claim pending rows (`FOR UPDATE SKIP LOCKED`), run the source's mappings, write through the same
services as the APIs, and mark the rows processed in that same transaction.

A worker killed mid-way holds an open transaction: PostgreSQL rolls it back and unlocks the rows,
so another worker claims them again and nothing is half-stored. The message id is the default
event id, so storing a message again never makes a second usage event.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from hub.models import App
from hub.raw_cursor import raw_cursor

from .actions import Prepared, action_for, actions_all
from .formats import Received, format_detect, format_for
from .mapping_engine import CompiledMapping, MappingError, mapping_compile, mappings_run
from .models import InboxMessage, Mapping, Source
from .triggers import TriggerError

logger = logging.getLogger(__name__)

_INSERT_HEAD = (
    "INSERT INTO sources_inboxmessage (source_id, format, message_id, type, event, payload, status, "
    "outcome, error, matched, results, received_at) VALUES "
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, '[]', '[]', %s)"
_CHUNK = 500


@dataclass
class Receipt:
    """What a request delivered: how many messages were kept, and each rejected one with why."""

    accepted: int = 0
    rejected: list[dict] = field(default_factory=list)

    def body(self) -> dict:
        body: dict[str, Any] = {"success": True, "accepted": self.accepted}
        if self.rejected:
            body["rejected"] = self.rejected
        return body


def _stub(received: Received) -> dict:
    """What is kept of a rejected message: a few fields, without NUL (PostgreSQL's jsonb holds none)."""
    message = received.message
    if isinstance(message, dict):
        return {k: _without_nul(message[k]) for k in ("type", "messageId", "event", "userId") if k in message}
    return {}


def _without_nul(value: Any) -> Any:
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
    items: list[Any],
    format_kind: str | None = None,
    defaults: dict | None = None,
    max_messages: int | None = None,
) -> Receipt:
    """Validate each item in its format and commit all to the inbox (rejected ones with the reason).

    `format_kind=None` detects each item's format (webhooks). Enqueues processing after commit.
    """
    receipt, rows = _receipt_rows(
        source=source, items=items, format_kind=format_kind, defaults=defaults, max_messages=max_messages
    )
    _insert(rows)
    if receipt.accepted:
        from .tasks import inbox_drain

        transaction.on_commit(inbox_drain.delay)
    return receipt


def inbox_receive_inline(*, source: Source, items: list[Any], format_kind: str) -> list[str]:
    """Commit the items to the inbox and run the source's mappings over them in the same
    transaction, so what they make is stored before the caller answers; each message's outcome.

    For the synchronous Metronome- and Kable-compatible endpoints: the rows are invisible to the
    workers until they are processed, and a database error stores nothing (the client retries).
    """
    _, rows = _receipt_rows(source=source, items=items, format_kind=format_kind)
    with transaction.atomic():
        ids = _insert(rows)
        outcomes = dict(_process_claimed(limit=len(ids), ids=ids))
    return [outcomes.get(row_id, InboxMessage.Outcome.REJECTED) for row_id in ids]


def inbox_refuse(*, source: Source, items: list[Any], format_kind: str, reason: str) -> None:
    """Record refused items as rejected with `reason` (a request refused as a whole), for the debugger."""
    _, rows = _receipt_rows(source=source, items=items, format_kind=format_kind, refused=reason)
    _insert(rows)


def _receipt_rows(
    *,
    source: Source,
    items: list[Any],
    format_kind: str | None,
    defaults: dict | None = None,
    max_messages: int | None = None,
    refused: str = "",
) -> tuple[Receipt, list[tuple]]:
    max_bytes = settings.HUB_SOURCE_MESSAGE_MAX_BYTES
    received_at = timezone.now()
    stamp = received_at.isoformat().replace("+00:00", "Z")
    fmt = format_for(format_kind) if format_kind else None
    receipt = Receipt()
    rows = []
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
        if not received.error and max_messages is not None and receipt.accepted >= max_messages:
            received.error = f"over {max_messages} messages in one batch"
        if refused and not received.error:
            received.error = refused
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
            (
                source.pk,
                received.format,
                received.message_id.replace("\x00", ""),
                received.type.replace("\x00", ""),
                received.event.replace("\x00", ""),
                payload.decode(),
                status,
                outcome,
                received.error,
                received_at,
            )
        )
    return receipt, rows


def _insert(rows: list[tuple]) -> list[int]:
    """Insert inbox rows; their ids, in order."""
    if not rows:
        return []
    ids: list[int] = []
    with transaction.atomic() if len(rows) > _CHUNK else nullcontext(), raw_cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            cursor.execute(
                _INSERT_HEAD + ", ".join([_ROW] * len(chunk)) + " RETURNING id",
                [v for row in chunk for v in row],
            )
            ids.extend(sorted(r[0] for r in cursor.fetchall()))
    return ids


# --- Processing ---------------------------------------------------------------------------------


@dataclass
class _Work:
    row_id: int
    source: Source
    message: Any
    results: list[dict] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


_CLAIM = (
    "SELECT id, source_id, payload FROM sources_inboxmessage WHERE status = 'pending' "
    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)
_CLAIM_IDS = (
    "SELECT id, source_id, payload FROM sources_inboxmessage WHERE status = 'pending' AND id = ANY(%s) "
    "ORDER BY id FOR UPDATE SKIP LOCKED"
)
_MARK = (
    "UPDATE sources_inboxmessage SET status = 'processed', outcome = %s, matched = %s, results = %s, "
    "error = %s, processed_at = %s WHERE id = %s"
)
# PostgreSQL: the whole batch in one statement (one row per message was most of a batch's time);
# text arrays in binary (%b), as psycopg escapes a text-format array's elements in Python.
_MARK_ALL = (
    "UPDATE sources_inboxmessage m SET status = 'processed', outcome = u.outcome, "
    "matched = u.matched::jsonb, results = u.results::jsonb, error = u.error, processed_at = u.at "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %s::timestamptz[], %s::bigint[]) "
    "AS u(outcome, matched, results, error, at, id) WHERE m.id = u.id"
)


def inbox_process_pending(*, limit: int = 500, ids: list[int] | None = None) -> int:
    """Claim up to `limit` pending messages, process them, mark them done; return how many."""
    try:
        with transaction.atomic():
            return len(_process_claimed(limit=limit, ids=ids))
    except OperationalError:
        raise  # the database is away: leave the rows pending, the task is retried
    except DatabaseError:
        if ids is not None and len(ids) == 1:
            raise
        # Something in the batch breaks the database write: isolate it, one message at a time.
        logger.exception("inbox batch failed; processing its messages one by one")
        with transaction.atomic(), raw_cursor() as cursor:
            cursor.execute(
                "SELECT id FROM sources_inboxmessage WHERE status = 'pending' ORDER BY id LIMIT %s "
                "FOR UPDATE SKIP LOCKED",
                [limit],
            )
            claimed = [r[0] for r in cursor.fetchall()]
        done = 0
        for row_id in claimed:
            try:
                done += inbox_process_pending(ids=[row_id], limit=1)
            except OperationalError:
                raise
            except DatabaseError as exc:
                _mark_failed(row_id, f"could not be stored: {exc.__class__.__name__}")
                done += 1
        return done


def _mark_failed(row_id: int, error: str) -> None:
    InboxMessage.objects.filter(pk=row_id, status=InboxMessage.Status.PENDING).update(
        status=InboxMessage.Status.PROCESSED,
        outcome=InboxMessage.Outcome.FAILED,
        error=error,
        processed_at=timezone.now(),
    )


def _process_claimed(*, limit: int, ids: list[int] | None) -> list[tuple[int, str]]:
    """Claim, run and mark pending rows (in the caller's transaction); each row's id and outcome."""
    with raw_cursor() as cursor:
        if ids is None:
            cursor.execute(_CLAIM, [limit])
        else:
            cursor.execute(_CLAIM_IDS, [ids])
        claimed = cursor.fetchall()
    if not claimed:
        return []
    source_ids = {r[1] for r in claimed}
    sources = {s.pk: s for s in Source.objects.select_related("app").filter(pk__in=source_ids)}
    compiled = mappings_for_sources(source_ids)
    work = [
        _Work(
            row_id, sources[source_id], orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        )
        for row_id, source_id, payload in claimed
    ]
    now = timezone.now()
    messages_run(work, compiled, now=now)
    rows = []
    for w in work:
        outcome, error = _outcome(w.results)
        rows.append(
            (
                outcome,
                orjson.dumps(w.matched).decode(),
                orjson.dumps(w.results).decode(),
                error,
                now,
                w.row_id,
            )
        )
    with raw_cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_MARK_ALL, [list(column) for column in zip(*rows, strict=True)])
        else:
            cursor.executemany(_MARK, rows)
    return [(row[-1], row[0]) for row in rows]


def _outcome(results: list[dict]) -> tuple[str, str]:
    if not results:
        return InboxMessage.Outcome.UNMATCHED, ""
    failed = [r for r in results if r["outcome"] == "failed"]
    if failed:
        return InboxMessage.Outcome.FAILED, "; ".join(f"{r['mapping']}: {r.get('error', '')}" for r in failed)
    if all(r["outcome"] == "duplicate" for r in results):
        return InboxMessage.Outcome.DUPLICATE, ""
    return InboxMessage.Outcome.STORED, ""


def mappings_for_sources(source_ids: set[int]) -> dict[int, list[CompiledMapping]]:
    """The enabled mappings of each source, compiled, in order (a broken one is left out, logged)."""
    out: dict[int, list[CompiledMapping]] = defaultdict(list)
    for m in Mapping.objects.filter(source_id__in=source_ids, enabled=True).order_by("position", "id"):
        try:
            targets = [t.name for t in action_for(m.action).targets]
            out[m.source_id].append(
                mapping_compile(
                    name=m.name, trigger=m.trigger, action=m.action, fields=m.fields, targets=targets, id=m.pk
                )
            )
        except (KeyError, TriggerError, MappingError):
            logger.warning("mapping %s of source %s does not compile; skipped", m.pk, m.source_id)
    return out


def messages_run(work: list[_Work], compiled: dict[int, list[CompiledMapping]], *, now: datetime) -> None:
    """Run mappings over each message and write what they make, grouped by app and action."""
    queues: dict[tuple[str, int], list[tuple[_Work, dict, Prepared]]] = defaultdict(list)
    apps: dict[int, App] = {}
    for w in work:
        event_ids: set[str] = set()
        for output in mappings_run(compiled.get(w.source.pk, []), w.message):
            mapping = output.mapping
            w.matched.append(mapping.name)
            result: dict[str, Any] = {"mapping": mapping.name, "action": mapping.action}
            w.results.append(result)
            if output.errors:
                result.update(outcome="failed", error="; ".join(output.errors))
                continue
            prepared = action_for(mapping.action).prepare(output.values, message=w.message, now=now)
            if prepared.errors:
                result.update(outcome="failed", error="; ".join(prepared.errors))
                continue
            if mapping.action == "usage_event":
                prepared = _distinct_event_id(prepared, mapping, event_ids)
                result["event_id"] = prepared.record["event_id"]
            apps[w.source.app_id] = w.source.app
            queues[(mapping.action, w.source.app_id)].append((w, result, prepared))
    for action in actions_all():
        for (kind, app_id), items in queues.items():
            if kind != action.kind:
                continue
            written = action.execute(app=apps[app_id], items=[p for _, _, p in items])
            for (_, result, _), w in zip(items, written, strict=True):
                result["outcome"] = w.outcome
                if w.error:
                    result["error"] = w.error


def _distinct_event_id(prepared: Prepared, mapping: CompiledMapping, seen: set[str]) -> Prepared:
    """Two usage-event mappings matching one message make two events: the later gets a suffix."""
    event_id = prepared.record["event_id"]
    if event_id in seen:
        event_id = f"{event_id}:{mapping.id or mapping.name}"[:255]
        prepared = Prepared(
            record={**prepared.record, "event_id": event_id},
            data=dataclasses.replace(prepared.data, event_id=event_id),
        )
    seen.add(event_id)
    return prepared


def inbox_stale_count(*, older_than: timedelta) -> int:
    """Pending messages received longer ago than `older_than` (what the sweep re-enqueues)."""
    return InboxMessage.objects.filter(
        status=InboxMessage.Status.PENDING, received_at__lt=timezone.now() - older_than
    ).count()


# --- Send test event ----------------------------------------------------------------------------


def message_test(
    *, source: Source, name: str, trigger: str, action: str, fields: Any, message: Any, store: bool = False
) -> dict:
    """Run one (possibly unsaved) mapping over a sample message: the record it makes or the errors.

    With `store`, the record is written for real through the same services as the worker.
    """
    from .services import MappingInvalid, mapping_validate

    try:
        compiled = mapping_validate(name=name or "test", trigger=trigger, action=action, fields=fields)
    except MappingInvalid as exc:
        return {"matched": False, "errors": [str(exc)], "pointer": exc.pointer}
    if not isinstance(message, dict):
        return {"matched": False, "errors": ["The sample message must be a JSON object."]}
    sample = dict(message)
    sample.setdefault("messageId", "test-message")
    outputs = mappings_run([compiled], sample)
    if not outputs:
        return {
            "matched": False,
            "errors": ["The trigger does not match this message: nothing would be stored."],
        }
    output = outputs[0]
    if output.errors:
        return {"matched": True, "values": output.values, "errors": output.errors}
    prepared = action_for(action).prepare(output.values, message=sample, now=timezone.now())
    out: dict[str, Any] = {
        "matched": True,
        "action": action,
        "values": output.values,
        "record": prepared.record,
        "errors": prepared.errors,
    }
    if store and not prepared.errors:
        with transaction.atomic():
            written = action_for(action).execute(app=source.app, items=[prepared])[0]
        out["stored"] = written.outcome
        if written.error:
            out["errors"] = [written.error]
    return out
