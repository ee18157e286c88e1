"""Transaction-scoped advisory locks that several packages must agree on (PostgreSQL only).

`app_usage_lock` serializes, per app, what changes which customer a stored usage event counts
for against what counts events: the events package's rollup drains take it shared (several drains
of one app run at once, each counting batches of its own), the customer merge and the metric
rebuilds take it exclusive (no drain runs meanwhile). On other databases (SQLite: one writer at a
time anyway) it does nothing.

`xact_lock_first_free` takes the first free lock of several (a shard, a send slot) without
waiting on any one of them: the rollup drains and the delivery engine's slots both use it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connection

_APP_USAGE = 7311  # the lock's class; the object is the app's primary key


def app_usage_lock(app_pk: int, *, shared: bool = False) -> None:
    """Wait for and hold, until the current transaction ends, the app's usage lock (exclusive, or
    `shared` with other shared holders)."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_APP_USAGE, app_pk])


@contextmanager
def app_usage_lock_held(app_pk: int, *, only_one: int | None = None) -> Iterator[bool]:
    """Hold the app's usage lock while the block runs, across the transactions it opens (True).

    With `only_one` (a lock class), first take the lock (only_one, app_pk) too, without waiting:
    when another process holds it, hold nothing and yield False. Both are taken in a transaction
    of a connection of this block's own, open until the block ends: transaction-level locks, so
    they never outlive their holder, also behind a pooler in transaction mode (PgBouncer), where
    a session lock taken between transactions could stay held on a server connection for good.
    The block's own connection must not wait for the usage lock itself (it would wait forever).
    """
    if connection.vendor != "postgresql":
        yield True
        return
    holder = psycopg.connect(**connection.get_connection_params())
    try:
        holder.autocommit = False
        with holder.cursor() as cursor:
            if only_one is not None:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [only_one, app_pk])
                if not cursor.fetchone()[0]:
                    yield False
                    return
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_APP_USAGE, app_pk])
        yield True
    finally:
        holder.rollback()
        holder.close()


def xact_lock_first_free(cursor: Any, lock_class: int, keys: Sequence[int], wait: float = 0.0) -> int | None:
    """Take, until the current transaction ends, the first free advisory lock (lock_class, key) of
    `keys`, in their order, and return its key; None when every one is held. With `wait`, poll (a
    few milliseconds apart, growing to 20 ms) for up to that many seconds while none is free."""
    deadline = time.monotonic() + wait
    pause = 0.002
    while True:
        for key in keys:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [lock_class, key])
            if cursor.fetchone()[0]:
                return key
        if time.monotonic() + pause > deadline:
            return None
        time.sleep(pause)
        pause = min(0.02, pause * 2)
