"""psycopg's own cursor on Django's connection, for the few hot paths that skip the ORM.

psycopg's cursor binds parameters on the server and prepares repeated statements, several times
faster for batches than Django's client-binding cursor. It keeps Django's behaviour where it
matters: the health check of a reused connection before use, and database errors converted to
Django's (and the connection marked, so a broken one is closed at the end of the request).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def raw_cursor() -> Iterator:
    """A cursor of the driver (PostgreSQL), or Django's own cursor on other databases."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    # Django's connection makes client-side binding cursors: ask for a server-binding one.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
