"""Migration 0012 moves the activities not dispatched yet into the outbox, oldest first, and back."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import AppFactory, CustomerFactory

BEFORE = ("hub", "0011_activity_app_index_dropped")
AFTER = ("hub", "0012_activity_outbox")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def rows(sql: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_undispatched_activities_are_queued_oldest_first_and_unqueued_on_the_way_back():
    app = AppFactory()
    customer = CustomerFactory(app=app)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM hub_activity")
            for i in range(10):
                # Every third dispatched; created in an order that is not the insert order.
                created = start + timedelta(minutes=(i * 7) % 10)
                cursor.execute(
                    "INSERT INTO hub_activity (id, app_id, customer_id, kind, occurred_at, properties, "
                    "customer_fields, created_at, dispatched_at) "
                    "VALUES (gen_random_uuid(), %s, %s, 'reviewed', %s, '{}', '{}', %s, %s)",
                    [app.pk, customer.pk, created, created, created if i % 3 == 0 else None],
                )
        undispatched = [
            r[0] for r in rows("SELECT id FROM hub_activity WHERE dispatched_at IS NULL ORDER BY created_at")
        ]
        assert len(undispatched) == 6

        migrate(AFTER)

        assert [r[0] for r in rows("SELECT activity_id FROM hub_activityoutbox ORDER BY id")] == undispatched
        with connection.cursor() as cursor:  # recorded after the migration: queued by the trigger
            cursor.execute(
                "INSERT INTO hub_activity (id, app_id, customer_id, kind, occurred_at, properties, "
                "customer_fields, created_at) VALUES (gen_random_uuid(), %s, %s, 'reviewed', now(), "
                "'{}', '{}', now()) RETURNING id",
                [app.pk, customer.pk],
            )
            new = cursor.fetchone()[0]
        assert rows("SELECT activity_id FROM hub_activityoutbox ORDER BY id DESC LIMIT 1") == [(new,)]
        with connection.cursor() as cursor:  # the fan-out claimed the oldest one
            cursor.execute("DELETE FROM hub_activityoutbox WHERE activity_id = %s", [undispatched[0]])

        migrate(BEFORE)

        still = {r[0] for r in rows("SELECT id FROM hub_activity WHERE dispatched_at IS NULL")}
        assert still == {*undispatched[1:], new}
        assert rows("SELECT count(*) FROM hub_activity WHERE dispatched_at IS NOT NULL") == [(5,)]
        assert not rows("SELECT 1 FROM pg_class WHERE relname = 'hub_activityoutbox'")
    finally:
        migrate(AFTER)
