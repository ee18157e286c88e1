"""Processing the inbox: workers claim batches (`FOR UPDATE SKIP LOCKED`), run the source's
mappings, write through the same services as the APIs, mark the messages processed and delete the
batches in that same transaction.

A worker killed mid-way holds an open transaction: PostgreSQL rolls it back and unlocks the
batches, so another worker claims them again and nothing is half-stored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import Sum
from django.utils import timezone

from hub.models import App

from .actions import Prepared, action_for, actions_all
from .inbox_store import Mark, PendingRow, batches_delete, message_mark_failed, store
from .mapping_cache import sources_and_mappings
from .mapping_engine import CompiledMapping, mappings_run
from .models import InboxBatch, InboxMessage, Source

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Work:
    """One message being processed: what its mappings matched and what each one did."""

    row_id: int
    source: Source
    message: Any
    results: list[dict[str, Any]] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


def inbox_process_pending(*, limit: int = 500) -> int:
    """Claim pending batches (about `limit` messages), process them, mark them done; how many."""
    try:
        with transaction.atomic():
            batches = store().batches_claim(limit)
            rows = store().pending_rows(batches)
            if rows:
                messages_process(rows, batch_ids=[batch_id for batch_id, _ in batches])
            else:
                batches_delete([batch_id for batch_id, _ in batches])
        return len(rows)
    except OperationalError:
        raise  # the database is away: the batches stay, the task is retried
    except DatabaseError:
        # Something in the batches breaks the database write: isolate it, one message at a time.
        logger.exception("inbox batch failed; processing its messages one by one")
        return _process_one_by_one(limit)


def _process_one_by_one(limit: int) -> int:
    with transaction.atomic():
        batches = store().batches_claim(limit)
        rows = store().pending_rows(batches)
        for row in rows:
            try:
                with transaction.atomic():
                    messages_process([row])
            except OperationalError:
                raise
            except DatabaseError as exc:
                message_mark_failed(row[0], f"could not be stored: {exc.__class__.__name__}")
        batches_delete([batch_id for batch_id, _ in batches])
    return len(rows)


def messages_process(
    rows: list[PendingRow],
    *,
    sources: dict[int, Source] | None = None,
    batch_ids: list[int] | None = None,
) -> list[tuple[int, str]]:
    """Run and mark pending messages (in the caller's transaction, which owns them: their batch is
    locked, or they are not committed yet), deleting the batches `batch_ids` with the marks; each
    message's id and outcome."""
    if not rows:
        return []
    loaded, compiled = sources_and_mappings({r[1] for r in rows})
    if sources is not None:
        loaded.update(sources)
    work = [
        Work(
            row_id, loaded[source_id], orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        )
        for row_id, source_id, payload in rows
        if source_id in loaded  # a source deleted meanwhile: its messages go with it
    ]
    now = timezone.now()
    messages_run(work, compiled, now=now)
    marks: list[Mark] = []
    for w in work:
        outcome, error = _outcome(w.results)
        marks.append(
            (outcome, orjson.dumps(w.matched).decode(), orjson.dumps(w.results).decode(), error, w.row_id)
        )
    if not marks:
        batches_delete(batch_ids or [])
        return []
    store().messages_mark(marks, batch_ids=batch_ids or [], now=now)
    return [(mark[-1], mark[0]) for mark in marks]


def _outcome(results: list[dict[str, Any]]) -> tuple[str, str]:
    if not results:
        return InboxMessage.Outcome.UNMATCHED, ""
    failed = [r for r in results if r["outcome"] == "failed"]
    if failed:
        return InboxMessage.Outcome.FAILED, "; ".join(f"{r['mapping']}: {r.get('error', '')}" for r in failed)
    if all(r["outcome"] == "duplicate" for r in results):
        return InboxMessage.Outcome.DUPLICATE, ""
    return InboxMessage.Outcome.STORED, ""


def messages_run(work: list[Work], compiled: dict[int, list[CompiledMapping]], *, now: datetime) -> None:
    """Run mappings over each message and write what they make, grouped by app and action."""
    queues: dict[tuple[str, int], list[tuple[Work, dict[str, Any], Prepared]]] = defaultdict(list)
    apps: dict[int, App] = {}
    for w in work:
        seen: dict[str, set[str]] = defaultdict(set)  # each action's state for this message
        for output in mappings_run(compiled.get(w.source.pk, []), w.message):
            mapping = output.mapping
            w.matched.append(mapping.name)
            result: dict[str, Any] = {"mapping": mapping.name, "action": mapping.action}
            w.results.append(result)
            if output.errors:
                result.update(outcome="failed", error="; ".join(output.errors))
                continue
            action = action_for(mapping.action)
            prepared = action.prepare(output.values, message=w.message, now=now)
            if prepared.errors:
                result.update(outcome="failed", error="; ".join(prepared.errors))
                continue
            prepared, shown = action.in_message(
                prepared, mapping_key=str(mapping.id or mapping.name), seen=seen[mapping.action]
            )
            result.update(shown)
            apps[w.source.app_id] = w.source.app
            queues[(mapping.action, w.source.app_id)].append((w, result, prepared))
    for action in actions_all():
        for (kind, app_id), items in queues.items():
            if kind != action.kind:
                continue
            written = action.execute(app=apps[app_id], items=[p for _, _, p in items])
            for (_, result, _), one in zip(items, written, strict=True):
                result["outcome"] = one.outcome
                if one.error:
                    result["error"] = one.error


def inbox_stale_count(*, older_than: timedelta) -> int:
    """Messages in batches waiting longer than `older_than` (what the sweep re-enqueues)."""
    waiting = InboxBatch.objects.filter(created_at__lt=timezone.now() - older_than)
    return waiting.aggregate(messages=Sum("size"))["messages"] or 0
