"""Transaction-scoped advisory locks that several packages must agree on (PostgreSQL only).

`app_usage_lock` serializes, per app, what changes which customer a stored usage event counts
for: the events package's rollup workers take it before counting events, and the customer merge
takes it before moving a placeholder's events. On other databases (SQLite: one writer at a
time anyway) it does nothing.
"""

from __future__ import annotations

from django.db import connection

_APP_USAGE = 7311  # the lock's class; the object is the app's primary key


def app_usage_lock(app_pk: int) -> None:
    """Wait for and hold, until the current transaction ends, the app's usage lock."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_APP_USAGE, app_pk])


def app_usage_lock_session(app_pk: int, *, unlock: bool = False) -> None:
    """Take (or release) the same lock for the whole session, across transactions."""
    if connection.vendor != "postgresql":
        return
    fn = "pg_advisory_unlock" if unlock else "pg_advisory_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {fn}(%s, %s)", [_APP_USAGE, app_pk])
