"""The inbox: every received message is committed here before the sender gets its 2xx, with an
`InboxBatch` of the request's pending messages in the same statement; workers claim batches
(`FOR UPDATE SKIP LOCKED`), run the source's mappings, write through the same services as the
APIs, mark the messages processed and delete the batches in that same transaction.

A worker killed mid-way holds an open transaction: PostgreSQL rolls it back and unlocks the
batches, so another worker claims them again and nothing is half-stored. The message id is the
default event id, so storing a message again never makes a second usage event.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from hub.models import App
from hub.raw_cursor import raw_cursor

from .actions import Prepared, action_for, actions_all
from .formats import Received, format_detect, format_for
from .mapping_engine import CompiledMapping, MappingError, mapping_compile, mappings_run
from .models import InboxBatch, InboxMessage, Mapping, Source
from .triggers import TriggerError

logger = logging.getLogger(__name__)

_COLUMNS = (
    "(source_id, format, message_id, type, event, payload, status, outcome, error, matched, results, "
    "received_at)"
)
# PostgreSQL: the rows arrive as arrays (one short prepared statement for any batch size; psycopg
# parses a statement of a thousand placeholders in Python on every call), text arrays in binary
# (%b: a text-format array's elements are escaped in Python).
_SELECT_UNNEST = (
    "SELECT %s, f, i, t, e, p::json, s, o, r, '[]', '[]', %s FROM unnest(%b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) AS u(f, i, t, e, p, s, o, r)"
)
_INSERT_PG = f"INSERT INTO sources_inboxmessage {_COLUMNS} {_SELECT_UNNEST} RETURNING id"
# ...and with the batch of the pending ones, so the batch commits with its messages.
_INSERT_BATCHED_PG = (
    f"WITH ins AS (INSERT INTO sources_inboxmessage {_COLUMNS} {_SELECT_UNNEST} "  # noqa: S608
    "RETURNING id, status) "
    "INSERT INTO sources_inboxbatch (source_id, message_ids, size, created_at) "
    "SELECT %s, to_jsonb(array_agg(id ORDER BY id)), count(*), %s FROM ins WHERE status = 'pending' "
    "HAVING count(*) > 0"
)
# ...and the usual request, every message valid and of one format: four arrays, not eight.
_INSERT_PENDING_PG = (
    f"WITH ins AS (INSERT INTO sources_inboxmessage {_COLUMNS} "  # noqa: S608
    "SELECT %s, %s, i, t, e, p::json, 'pending', '', '', '[]', '[]', %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS u(i, t, e, p) RETURNING id) "
    "INSERT INTO sources_inboxbatch (source_id, message_ids, size, created_at) "
    "SELECT %s, to_jsonb(array_agg(id ORDER BY id)), count(*), %s FROM ins"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, '[]', '[]', %s)"


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
) -> Receipt:
    """Validate each item in its format and commit all to the inbox (rejected ones with the reason).

    `format_kind=None` detects each item's format (webhooks). Enqueues processing after commit.
    """
    receipt, rows, received_at = _receipt_rows(
        source=source, items=items, format_kind=format_kind, defaults=defaults
    )
    _insert(source, rows, received_at, batched=True)
    if receipt.accepted:
        from .tasks import inbox_drain_soon

        transaction.on_commit(inbox_drain_soon)
    return receipt


def inbox_receive_inline(*, source: Source, items: list[Any], format_kind: str) -> list[str]:
    """Commit the items to the inbox and run the source's mappings over them in the same
    transaction, so what they make is stored before the caller answers; each message's outcome.

    For the synchronous Metronome- and Kable-compatible endpoints: the rows are invisible to the
    workers until they are processed, and a database error stores nothing (the client retries).
    """
    _, rows, received_at = _receipt_rows(source=source, items=items, format_kind=format_kind)
    with transaction.atomic():
        ids = _insert(source, rows, received_at, batched=False)
        pending = [
            (row_id, source.pk, row.message)
            for row_id, row in zip(ids, rows, strict=True)
            if row.status == InboxMessage.Status.PENDING
        ]
        outcomes = dict(_process_rows(pending, sources={source.pk: source}))
    return [outcomes.get(row_id, InboxMessage.Outcome.REJECTED) for row_id in ids]


def messages_check(*, source: Source, items: list[Any], format_kind: str) -> list[tuple[int, str, str]]:
    """A dry run of the source's current mappings over items, writing nothing: `(index, mapping
    name, error)` for each item a matching mapping could not store (its values, or the record its
    action would write, refused). An item its format refuses is `(index, "", error)`."""
    _, compiled = _sources_and_mappings({source.pk})
    mappings = compiled.get(source.pk, [])
    fmt = format_for(format_kind)
    now = timezone.now()
    stamp = now.isoformat().replace("+00:00", "Z")
    problems = []
    for index, item in enumerate(items):
        received = fmt.normalize(item, received_at=stamp)
        if received.error:
            problems.append((index, "", received.error))
            continue
        for output in mappings_run(mappings, received.message):
            errors = output.errors or (
                action_for(output.mapping.action)
                .prepare(output.values, message=received.message, now=now)
                .errors
            )
            if errors:
                problems.append((index, output.mapping.name, "; ".join(errors)))
    return problems


def inbox_refuse(*, source: Source, items: list[Any], format_kind: str, reason: str) -> None:
    """Record refused items as rejected with `reason` (a request refused as a whole), for the debugger;
    without items (a body unread, or not JSON), one row stands for the request."""
    _, rows, received_at = _receipt_rows(
        source=source, items=items or [{}], format_kind=format_kind, refused=reason
    )
    if not items:
        rows[0].error = reason
    _insert(source, rows, received_at, batched=False)


@dataclass
class _Row:
    """One inbox row to insert (the source and the time of receipt are the request's)."""

    format: str
    message_id: str
    type: str
    event: str
    payload: str
    status: str
    outcome: str
    error: str
    message: Any  # the normalized message, for inline processing


def _receipt_rows(
    *,
    source: Source,
    items: list[Any],
    format_kind: str | None,
    defaults: dict | None = None,
    refused: str = "",
) -> tuple[Receipt, list[_Row], datetime]:
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
            _Row(
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


def _insert(source: Source, rows: list[_Row], received_at: datetime, *, batched: bool) -> list[int]:
    """Insert inbox rows (and, `batched`, the batch of the pending ones for the workers); their ids
    in order, unless `batched`."""
    if not rows:
        return []
    if connection.vendor == "postgresql":
        pending = InboxMessage.Status.PENDING
        if batched and all(r.status == pending and r.format == rows[0].format for r in rows):
            columns = [[r.message_id for r in rows], [r.type for r in rows], [r.event for r in rows]]
            columns.append([r.payload for r in rows])
            with raw_cursor() as cursor:
                cursor.execute(
                    _INSERT_PENDING_PG,
                    [source.pk, rows[0].format, received_at, *columns, source.pk, received_at],
                )
            return []
        columns = [
            [getattr(r, name) for r in rows]
            for name in ("format", "message_id", "type", "event", "payload", "status", "outcome", "error")
        ]
        with raw_cursor() as cursor:
            if batched:
                cursor.execute(_INSERT_BATCHED_PG, [source.pk, received_at, *columns, source.pk, received_at])
                return []
            cursor.execute(_INSERT_PG, [source.pk, received_at, *columns])
            return sorted(r[0] for r in cursor.fetchall())
    ids: list[int] = []
    with transaction.atomic(), raw_cursor() as cursor:
        for r in rows:
            cursor.execute(
                f"INSERT INTO sources_inboxmessage {_COLUMNS} VALUES {_ROW} RETURNING id",  # noqa: S608
                [source.pk, r.format, r.message_id, r.type, r.event, r.payload, r.status, r.outcome, r.error,
                 received_at],
            )  # fmt: skip
            ids.append(cursor.fetchone()[0])
        pending = [i for i, r in zip(ids, rows, strict=True) if r.status == InboxMessage.Status.PENDING]
        if batched and pending:
            InboxBatch.objects.create(
                source=source, message_ids=pending, size=len(pending), created_at=received_at
            )
    return ids


# --- Processing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Work:
    row_id: int
    source: Source
    message: Any
    results: list[dict] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


# Batches after the last one this transaction claimed (SKIP LOCKED skips other transactions'
# locks, not its own): their sizes first, without locks, then the ones that reach the limit.
_CANDIDATES = "SELECT id, size FROM sources_inboxbatch WHERE id > %s ORDER BY id LIMIT %s"
_CLAIM_BATCHES = (
    "SELECT id, size, message_ids FROM sources_inboxbatch WHERE id = ANY(%s) ORDER BY id "
    "FOR UPDATE SKIP LOCKED"
)
_CANDIDATES_AT_ONCE = 64
_PENDING_OF = (
    "SELECT id, source_id, payload FROM sources_inboxmessage WHERE id = ANY(%s) AND status = 'pending' "
    "ORDER BY id"
)
_MARK = (
    "UPDATE sources_inboxmessage SET status = 'processed', outcome = %s, matched = %s, results = %s, "
    "error = %s, processed_at = %s WHERE id = %s AND status = 'pending'"
)
# PostgreSQL: the whole batch in one statement (one row per message was most of a batch's time),
# with the claimed batches deleted; arrays in binary (%b), as psycopg escapes a text-format
# array's elements in Python.
_MARK_ALL = (
    "WITH done AS (DELETE FROM sources_inboxbatch WHERE id = ANY(%s)) "
    "UPDATE sources_inboxmessage m SET status = 'processed', outcome = u.outcome, "
    "matched = u.matched::json, results = u.results::json, error = u.error, processed_at = %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[]) "
    "AS u(outcome, matched, results, error, id) WHERE m.id = u.id AND m.status = 'pending'"
)
# ...and the usual batch, every message with the same outcome, mappings and error: two arrays.
_MARK_UNIFORM = (
    "WITH done AS (DELETE FROM sources_inboxbatch WHERE id = ANY(%s)) "
    "UPDATE sources_inboxmessage m SET status = 'processed', outcome = %s, matched = %s::json, "
    "results = u.results::json, error = %s, processed_at = %s "
    "FROM unnest(%b::text[], %b::bigint[]) AS u(results, id) WHERE m.id = u.id AND m.status = 'pending'"
)
# The state of what processing reads besides the messages: a source's app and its enabled
# mappings, as digests of their rows (whatever changed them, a form or a bulk update).
_SOURCE_STATE = (
    "SELECT s.id, md5(a::text), (SELECT md5(coalesce(string_agg(m::text, ',' ORDER BY m.position, m.id), "
    "'')) FROM sources_mapping m WHERE m.source_id = s.id AND m.enabled) "
    "FROM sources_source s JOIN hub_app a ON a.id = s.app_id WHERE s.id = ANY(%s)"
)
_CACHE_MAX_SOURCES = 1000


def inbox_process_pending(*, limit: int = 500) -> int:
    """Claim pending batches (about `limit` messages), process them, mark them done; how many."""
    try:
        with transaction.atomic():
            batches = _claim_batches(limit)
            rows = _pending_rows(batches)
            if rows:
                _process_rows(rows, batch_ids=[batch_id for batch_id, _ in batches])
            else:
                _delete_batches([batch_id for batch_id, _ in batches])
        return len(rows)
    except OperationalError:
        raise  # the database is away: the batches stay, the task is retried
    except DatabaseError:
        # Something in the batches breaks the database write: isolate it, one message at a time.
        logger.exception("inbox batch failed; processing its messages one by one")
        return _process_one_by_one(limit)


def _process_one_by_one(limit: int) -> int:
    with transaction.atomic():
        batches = _claim_batches(limit)
        rows = _pending_rows(batches)
        for row in rows:
            try:
                with transaction.atomic():
                    _process_rows([row])
            except OperationalError:
                raise
            except DatabaseError as exc:
                _mark_failed(row[0], f"could not be stored: {exc.__class__.__name__}")
        _delete_batches([batch_id for batch_id, _ in batches])
    return len(rows)


def _claim_batches(limit: int) -> list[tuple[int, list[int]]]:
    """Lock pending batches, oldest first, until they hold `limit` messages (or none is left); the
    last one may take it past `limit`, by less than one batch."""
    claimed: list[tuple[int, list[int]]] = []
    total, after = 0, 0
    # SQLite has no row locks: its transactions (BEGIN IMMEDIATE) hold the database's write lock.
    claim = (
        _CLAIM_BATCHES
        if connection.vendor == "postgresql"
        else _CLAIM_BATCHES.replace("id = ANY(%s)", "id IN (SELECT value FROM json_each(%s))").replace(
            " FOR UPDATE SKIP LOCKED", ""
        )
    )
    with raw_cursor() as cursor:
        while total < limit:
            cursor.execute(_CANDIDATES, [after, _CANDIDATES_AT_ONCE])
            candidates = cursor.fetchall()
            if not candidates:
                break
            wanted, room = [], limit - total
            for batch_id, size in candidates:
                wanted.append(batch_id)
                room -= size
                if room <= 0:
                    break
            after = wanted[-1]
            ids = wanted if connection.vendor == "postgresql" else orjson.dumps(wanted).decode()
            cursor.execute(claim, [ids])
            for batch_id, size, message_ids in cursor.fetchall():
                if isinstance(message_ids, str | bytes):
                    message_ids = orjson.loads(message_ids)
                claimed.append((batch_id, message_ids))
                total += size
            if len(candidates) < _CANDIDATES_AT_ONCE and wanted[-1] == candidates[-1][0]:
                break
    return claimed


def _pending_rows(batches: list[tuple[int, list[int]]]) -> list[tuple[int, int, Any]]:
    """The messages of claimed batches still pending: (id, source id, payload), in order."""
    ids = [message_id for _, message_ids in batches for message_id in message_ids]
    if not ids:
        return []
    with raw_cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_PENDING_OF, [ids])
            return cursor.fetchall()
    return list(
        InboxMessage.objects.filter(pk__in=ids, status=InboxMessage.Status.PENDING)
        .order_by("id")
        .values_list("id", "source_id", "payload")
    )


def _delete_batches(batch_ids: list[int]) -> None:
    """Batches done without a mark to fold their deletion into (none of their messages pending)."""
    if batch_ids:
        InboxBatch.objects.filter(pk__in=batch_ids).delete()


def _mark_failed(row_id: int, error: str) -> None:
    InboxMessage.objects.filter(pk=row_id, status=InboxMessage.Status.PENDING).update(
        status=InboxMessage.Status.PROCESSED,
        outcome=InboxMessage.Outcome.FAILED,
        error=error,
        processed_at=timezone.now(),
    )


def _process_rows(
    rows: list[tuple[int, int, Any]],
    *,
    sources: dict[int, Source] | None = None,
    batch_ids: list[int] | None = None,
) -> list[tuple[int, str]]:
    """Run and mark pending messages (in the caller's transaction, which owns them: their batch is
    locked, or they are not committed yet), deleting the batches `batch_ids` with the marks; each
    message's id and outcome."""
    if not rows:
        return []
    loaded, compiled = _sources_and_mappings({r[1] for r in rows})
    if sources is not None:
        loaded.update(sources)
    work = [
        _Work(
            row_id, loaded[source_id], orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        )
        for row_id, source_id, payload in rows
        if source_id in loaded  # a source deleted meanwhile: its messages go with it
    ]
    now = timezone.now()
    messages_run(work, compiled, now=now)
    marks = []
    for w in work:
        outcome, error = _outcome(w.results)
        marks.append(
            (outcome, orjson.dumps(w.matched).decode(), orjson.dumps(w.results).decode(), error, w.row_id)
        )
    if not marks:
        _delete_batches(batch_ids or [])
        return []
    with raw_cursor() as cursor:
        if connection.vendor == "postgresql":
            outcome, matched, _, error, _ = marks[0]
            if all(m[0] == outcome and m[1] == matched and m[3] == error for m in marks):
                results, ids = [m[2] for m in marks], [m[4] for m in marks]
                cursor.execute(_MARK_UNIFORM, [batch_ids or [], outcome, matched, error, now, results, ids])
            else:
                columns = [list(column) for column in zip(*marks, strict=True)]
                cursor.execute(_MARK_ALL, [batch_ids or [], now, *columns])
        else:
            cursor.executemany(_MARK, [(o, m, r, e, now, i) for o, m, r, e, i in marks])
            _delete_batches(batch_ids or [])
    return [(mark[-1], mark[0]) for mark in marks]


def _outcome(results: list[dict]) -> tuple[str, str]:
    if not results:
        return InboxMessage.Outcome.UNMATCHED, ""
    failed = [r for r in results if r["outcome"] == "failed"]
    if failed:
        return InboxMessage.Outcome.FAILED, "; ".join(f"{r['mapping']}: {r.get('error', '')}" for r in failed)
    if all(r["outcome"] == "duplicate" for r in results):
        return InboxMessage.Outcome.DUPLICATE, ""
    return InboxMessage.Outcome.STORED, ""


# This process's sources (with their apps) and compiled mappings, by source id, each with the
# digest it was loaded at: reused while the database gives the same digest.
_loaded_sources: dict[int, tuple[str, Source]] = {}
_compiled_mappings: dict[int, tuple[str, list[CompiledMapping]]] = {}


def _sources_and_mappings(source_ids: set[int]) -> tuple[dict[int, Source], dict[int, list[CompiledMapping]]]:
    """The sources (with their apps) and compiled enabled mappings of `source_ids`: one query for
    their digests, and the ORM only for what changed since this process last loaded it."""
    if connection.vendor != "postgresql":
        sources = {s.pk: s for s in Source.objects.select_related("app").filter(pk__in=source_ids)}
        return sources, mappings_for_sources(source_ids)
    with raw_cursor() as cursor:
        cursor.execute(_SOURCE_STATE, [list(source_ids)])
        state = {
            source_id: (app_digest, mappings_digest) for source_id, app_digest, mappings_digest in cursor
        }
    if len(_loaded_sources) > _CACHE_MAX_SOURCES:
        _loaded_sources.clear()
        _compiled_mappings.clear()
    # Built from local lookups, so another thread clearing the caches meanwhile changes nothing here.
    sources: dict[int, Source] = {}
    compiled: dict[int, list[CompiledMapping]] = {}
    stale = []
    for i, (app_digest, mappings_digest) in state.items():
        source = _loaded_sources.get(i)
        if source is not None and source[0] == app_digest:
            sources[i] = source[1]
        else:
            stale.append(i)
        mappings = _compiled_mappings.get(i)
        if mappings is not None and mappings[0] == mappings_digest:
            compiled[i] = mappings[1]
    if stale:
        for source in Source.objects.select_related("app").filter(pk__in=stale):
            sources[source.pk] = source
            _loaded_sources[source.pk] = (state[source.pk][0], source)
    changed = [i for i in state if i not in compiled]
    if changed:
        fresh = mappings_for_sources(set(changed))
        for i in changed:
            compiled[i] = fresh.get(i, [])
            _compiled_mappings[i] = (state[i][1], compiled[i])
    return sources, compiled


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
    """Messages in batches waiting longer than `older_than` (what the sweep re-enqueues)."""
    waiting = InboxBatch.objects.filter(created_at__lt=timezone.now() - older_than)
    return waiting.aggregate(messages=Sum("size"))["messages"] or 0


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
