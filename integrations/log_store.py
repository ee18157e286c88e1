"""The delivery log's reads that need each database's own operators, behind one small interface:
PostgreSQL's JSON containment, a scan elsewhere (SQLite under `make run`). Chosen once per
connection vendor; the selectors never branch on the database.
"""

from __future__ import annotations

import functools
from typing import Protocol

from django.db import connection
from django.db.models import QuerySet

from .models import Attempt


class DeliveryLogStore(Protocol):
    def attempts_carrying(
        self, *, attempts: QuerySet[Attempt], delivery_id: str, limit: int
    ) -> list[Attempt]:
        """The first `limit` of `attempts` (in their order) whose request carried the delivery."""
        ...


class PostgresLogStore:
    def attempts_carrying(
        self, *, attempts: QuerySet[Attempt], delivery_id: str, limit: int
    ) -> list[Attempt]:
        return list(attempts.filter(delivery_ids__contains=[delivery_id])[:limit])


class PortableLogStore:
    """JSON containment is PostgreSQL's: elsewhere the (time-bounded) attempts are scanned."""

    def attempts_carrying(
        self, *, attempts: QuerySet[Attempt], delivery_id: str, limit: int
    ) -> list[Attempt]:
        return [a for a in attempts if delivery_id in (a.delivery_ids or [])][:limit]


@functools.cache
def _store_for(vendor: str) -> DeliveryLogStore:
    return PostgresLogStore() if vendor == "postgresql" else PortableLogStore()


def log_store() -> DeliveryLogStore:
    """The store of the default database."""
    return _store_for(connection.vendor)
