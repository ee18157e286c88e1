"""The SQL a block of code sends (with its parameters), and what a statement reads as PostgreSQL
executes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

from hub.raw_cursor import DirectStatement


@contextmanager
def statements_with_params() -> Iterator[list[tuple[str, object]]]:
    """The statements sent meanwhile (Django's cursors, psycopg's own and the hub's statements sent
    through libpq directly), with their parameters."""
    sent: list[tuple[str, object]] = []
    execute = psycopg.Cursor.execute
    run_direct = DirectStatement._run

    def recording(self, query, params=None, *args, **kwargs):
        sent.append((str(query), params))
        return execute(self, query, params, *args, **kwargs)

    def recording_direct(self, driver, values, params):
        sent.append((self.sql, list(params)))
        return run_direct(self, driver, values, params)

    psycopg.Cursor.execute = recording
    DirectStatement._run = recording_direct  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute
        DirectStatement._run = run_direct  # type: ignore[method-assign]


def _nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def rows_read(query: str, params: object, table: str) -> list[int]:
    """For each scan of `table` (or of its partitions, `table_p...`) in the statement's executed
    plan, the rows it read (returned plus removed by its filter). The statement runs (EXPLAIN
    ANALYZE) in the test's transaction, under the settings of the moment."""
    with connection.connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)
        (explained,) = cursor.fetchone()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    return [
        n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0)
        for n in _nodes(plan)
        if n.get("Relation Name") == table or n.get("Relation Name", "").startswith(f"{table}_p")
    ]


def customers_with_lagging_statistics(app, count: int) -> None:
    """`count` customers of `app` the table's statistics know nothing of: taken before they came,
    when another app's 300 customers were all there was (a hub's second app importing its shops)."""
    from hub.models import Customer
    from tests.factories import AppFactory

    other = AppFactory(workspace=app.workspace)
    Customer.objects.bulk_create(Customer(app=other, platform_id=f"o-{n}") for n in range(300))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE hub_customer")
    Customer.objects.bulk_create(
        Customer(app=app, platform_id=f"lag-{n}", myshopify_domain=f"lag{n}.myshopify.com")
        for n in range(count)
    )
