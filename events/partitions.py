"""Bounded growth of the usage-event table: monthly partitions made ahead, retired whole, and the
dedupe keys pruned after their window (docs/metrics.md, "Raw events: partitions and retention").

On PostgreSQL `events_usageevent` is partitioned by month of reception, through its ids: an
event's id is `month_index << 40` plus a value of one sequence, `month_index` counting the UTC
months since January 2000 of the event's `received_at` (the insert sets it; the column default,
for other writers, uses the transaction's time), and the table is partitioned by range of `id`,
one partition per month (`events_usageevent_pYYYY_MM`), plus a DEFAULT partition for what
arrives when no partition was made (the scheduler stopped for months) and, after the migration,
the events stored before it (`events_usageevent_before_pYYYY_MM`). So the primary key stays
`(id)`, and every reader by id (the rollups' drain, the forwarder, the admin) reads one partition
without knowing about partitions. A month is in the past for good once it ends, so a retired
partition can take no new rows. SQLite (`make run`) keeps a plain table: every function here does
nothing there but prune the (unused) dedupe keys.

Every function is safe to run twice at once (two schedulers by mistake): DDL runs under one
PostgreSQL advisory lock, with a short `lock_timeout` so that a long reader (a metric build's
snapshot) makes it wait for the next run instead of queueing every insert behind it. DDL takes
no bound parameters: Django's cursor (client-side binding) runs it, not `hub.raw_cursor`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from .models import UsageEventKey, UsageEventRetention

logger = logging.getLogger(__name__)

PARENT = "events_usageevent"
DEFAULT_PARTITION = "events_usageevent_default"
COLUMNS = "id, event_id, event_name, timestamp, properties, received_at, app_id, customer_id"
ID_SEQUENCE = "events_usageevent_id_seq"
MONTH_SHIFT = 40  # 2**40 ids a month; ids stay below 2**53 (exact in JSON) until the year 2682
_NAME = re.compile(r"^events_usageevent_(p|before_p)(\d{4})_(\d{2})$")
_ADVISORY_KEY = 0x75_73_67_65  # one key for all partition DDL of this database ("usge")


@dataclass(frozen=True)
class Partition:
    name: str
    end: datetime  # every event in it was received before this (exclusive)
    low_id: int | None  # inclusive; None: from the lowest id (the events stored before partitioning)
    high_id: int  # exclusive


def month_start(at: datetime) -> datetime:
    """The first instant of `at`'s UTC month."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def month_after(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def month_index(at: datetime) -> int:
    """UTC months since January 2000 of `at`: the high bits of the ids of events received then."""
    at = at.astimezone(UTC)
    return (at.year - 2000) * 12 + at.month - 1


def id_base(received_at: datetime) -> int:
    """The lowest id of the month of `received_at`; an event's id is this plus a sequence value."""
    return month_index(received_at) << MONTH_SHIFT


def _month_of_index(index: int) -> datetime:
    return datetime(2000 + index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_of(start: datetime) -> Partition:
    """The monthly partition beginning at `start` (a month's first instant)."""
    return Partition(
        f"{PARENT}_p{start:%Y_%m}", month_after(start), id_base(start), id_base(month_after(start))
    )


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def usage_event_partitions() -> list[Partition]:
    """The partitions attached to the events table but the default, oldest first (PostgreSQL)."""
    if not _postgres():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.match(name)
        if not match:
            continue
        month = partition_of(datetime(int(match[2]), int(match[3]), 1, tzinfo=UTC))
        if match[1] == "p":
            found.append(month)
        else:  # the events stored before the migration, which ran in that month
            found.append(Partition(name, month.end, None, month.low_id or 0))
    return sorted(found, key=lambda p: p.high_id)


def _ddl_lock(cursor: Any) -> None:
    """In the current transaction: the partition DDL lock, and a short wait for table locks."""
    timeout_ms = int(settings.HUB_USAGE_EVENT_DDL_LOCK_TIMEOUT * 1000)
    cursor.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_KEY])


def _partition_make(cursor: Any, partition: Partition) -> None:
    # Made beside the table and attached: ATTACH takes a SHARE UPDATE EXCLUSIVE lock on the events
    # table (inserts go on), where CREATE TABLE ... PARTITION OF would take an ACCESS EXCLUSIVE one.
    # Rows of the month that went to the default partition meanwhile move in, ids unchanged.
    cursor.execute(f"CREATE TABLE {partition.name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE id >= %s AND id < %s "  # noqa: S608
        f"RETURNING {COLUMNS}) INSERT INTO {partition.name} ({COLUMNS}) SELECT {COLUMNS} FROM moved",
        [partition.low_id, partition.high_id],
    )
    cursor.execute(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {partition.name} FOR VALUES FROM (%s) TO (%s)",
        [partition.low_id, partition.high_id],
    )


def usage_event_partitions_ensure(*, now: datetime | None = None, ahead: int | None = None) -> list[str]:
    """Make the missing monthly partitions from `now`'s month to `ahead` months later (default
    HUB_USAGE_EVENT_PARTITIONS_AHEAD); the names made. Idempotent and safe to run concurrently."""
    if not _postgres():
        return []
    now = now or timezone.now()
    ahead = settings.HUB_USAGE_EVENT_PARTITIONS_AHEAD if ahead is None else ahead
    wanted = [month_start(now)]
    for _ in range(ahead):
        wanted.append(month_after(wanted[-1]))
    # Also the months of rows that went to the default partition (the scheduler was stopped): their
    # partitions are made and the rows moved in, so that retention can retire them too.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT id >> {MONTH_SHIFT} FROM {DEFAULT_PARTITION}")  # noqa: S608
        waiting = {_month_of_index(row[0]) for row in cursor.fetchall()}
    wanted = sorted(set(wanted) | waiting)
    # Ids below the migration's month are all in its partition of the events stored before.
    floor = max((p.high_id for p in usage_event_partitions() if p.low_id is None), default=0)
    made = []
    for start in wanted:
        partition = partition_of(start)
        if partition.high_id <= floor:
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _ddl_lock(cursor)
                if partition in usage_event_partitions():
                    continue
                _partition_make(cursor, partition)
        except OperationalError as exc:  # lock_timeout: a long reader holds the table; next run
            logger.warning("usage events: partition %s not made now (%s)", partition.name, exc)
            continue
        made.append(partition.name)
        logger.info("usage events: partition %s made", partition.name)
    return made


def _apps_in(cursor: Any, partition: Partition) -> list[int]:
    # A loose index scan of the (app_id, timestamp, id) index: one probe per app, not per row.
    cursor.execute(
        "WITH RECURSIVE a(app_id) AS ("  # noqa: S608 (constant names)
        f"(SELECT app_id FROM {partition.name} ORDER BY app_id LIMIT 1) UNION ALL "
        f"SELECT (SELECT e.app_id FROM {partition.name} e WHERE e.app_id > a.app_id "
        "ORDER BY e.app_id LIMIT 1) FROM a WHERE a.app_id IS NOT NULL) "
        "SELECT app_id FROM a WHERE app_id IS NOT NULL"
    )
    return [row[0] for row in cursor.fetchall()]


def _pending_in(cursor: Any, partition: Partition) -> bool:
    """Whether a rollup or forward batch of events of this partition (or an older one) waits to
    be taken. The events of a batch were stored by one statement: its first id tells its month."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM events_rollupbatch WHERE (event_ids->>0)::bigint < %s) "
        "OR EXISTS (SELECT 1 FROM events_forwardbatch WHERE (event_ids->>0)::bigint < %s)",
        [partition.high_id, partition.high_id],
    )
    return bool(cursor.fetchone()[0])


def partition_expiry(partition: Partition, app_pks: list[int]) -> datetime | None:
    """When a partition holding events of these apps may go: its end plus the longest retention
    of those apps; None (never) when one of them keeps its events forever."""
    if not app_pks:
        return partition.end
    days = dict(UsageEventRetention.objects.filter(app_id__in=app_pks).values_list("app_id", "days"))
    if len(days) < len(set(app_pks)):
        return None
    return partition.end + timedelta(days=max(days.values()))


def usage_event_partitions_retire(*, now: datetime | None = None) -> list[str]:
    """Drop (or, with HUB_USAGE_EVENT_RETENTION_MODE=detach, detach and rename
    `events_usageevent_archive_…`) each whole partition past every retention of the apps
    with events in it and with none of its events waiting in a rollup or forward batch; the
    names retired. Never deletes rows; the rollups keep their figures."""
    if not _postgres():
        return []
    now = now or timezone.now()
    retired = []
    for partition in usage_event_partitions():
        if partition.end > now:
            break
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _ddl_lock(cursor)
                if partition not in usage_event_partitions():
                    continue  # retired by a concurrent run
                expiry = partition_expiry(partition, _apps_in(cursor, partition))
                if expiry is None or expiry > now:
                    continue
                if _pending_in(cursor, partition):
                    logger.info("usage events: partition %s kept: batches not counted yet", partition.name)
                    continue
                if settings.HUB_USAGE_EVENT_RETENTION_MODE == "detach":
                    archive = partition.name.replace(f"{PARENT}_", f"{PARENT}_archive_")
                    cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {partition.name}")
                    cursor.execute(f"ALTER TABLE {partition.name} RENAME TO {archive}")
                else:
                    cursor.execute(f"DROP TABLE {partition.name}")
        except OperationalError as exc:
            logger.warning("usage events: partition %s not retired now (%s)", partition.name, exc)
            continue
        retired.append(partition.name)
        logger.info("usage events: partition %s retired", partition.name)
    return retired


def usage_event_keys_prune(
    *, now: datetime | None = None, batch: int = 10_000, max_batches: int = 100
) -> int:
    """Delete dedupe keys older than HUB_USAGE_EVENT_DEDUPE_DAYS (0: keep forever), in small
    batches; the number deleted. An event id sent again after that is stored again."""
    days = settings.HUB_USAGE_EVENT_DEDUPE_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    for _ in range(max_batches):
        ids = list(UsageEventKey.objects.filter(received_at__lt=cutoff).values_list("id", flat=True)[:batch])
        if not ids:
            break
        deleted += UsageEventKey.objects.filter(id__in=ids).delete()[0]
    return deleted


def usage_event_storage_maintain(*, now: datetime | None = None) -> dict[str, Any]:
    """The scheduler's run: partitions made ahead, expired ones retired, old dedupe keys pruned."""
    return {
        "made": usage_event_partitions_ensure(now=now),
        "retired": usage_event_partitions_retire(now=now),
        "keys_pruned": usage_event_keys_prune(now=now),
    }
