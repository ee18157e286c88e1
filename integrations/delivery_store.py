"""The delivery engine's tables behind one small interface: set-based SQL on PostgreSQL, the ORM
elsewhere (SQLite under `make run`). Chosen once per connection vendor; the engine
(`integrations.delivery`) never branches on the database.

Every hot-path operation is a few statements per request, whatever its size: deliveries are
inserted from arrays, claimed with `FOR UPDATE SKIP LOCKED` as plain tuples (no ORM object per
delivery), and marked by id arrays.
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import connection

from .delivery_rows import DeliveryStore
from .delivery_store_orm import OrmStore
from .delivery_store_pg import PostgresStore
from .models import Delivery


@functools.cache
def _store_for(vendor: str) -> DeliveryStore:
    return PostgresStore() if vendor == "postgresql" else OrmStore()


def store() -> DeliveryStore:
    """The store of the default database (PostgreSQL's SQL, or the ORM)."""
    return _store_for(connection.vendor)


def integration_has_due(*, integration_id: int, now: datetime | None = None) -> bool:
    """Whether the integration has a pending delivery due by `now` (a sender would claim it)."""
    from django.utils import timezone

    return Delivery.objects.filter(
        integration_id=integration_id,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now or timezone.now(),
    ).exists()
