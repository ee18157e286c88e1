"""Migration 0008 converts a usage-event table holding events into the partitioned one, and back,
without losing or duplicating an event."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import AppFactory, CustomerFactory

BEFORE = ("events", "0007_forward_names")
AFTER = ("events", "0008_usage_event_partitions")
COLUMNS = "id, app_id, customer_id, event_id, event_name, timestamp, properties::text, received_at"


def migrate(target=None):
    """Migrate the events app to `target`, or to its latest migration."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target or executor.loader.graph.leaf_nodes("events")[0]])


def stored():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM events_usageevent ORDER BY id")
        return cursor.fetchall()


def relkind():
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'events_usageevent'")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_event_once_forward_and_back():
    app = AppFactory()
    customer = CustomerFactory(app=app)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        migrate(BEFORE)
        assert relkind() == "r"
        with connection.cursor() as cursor:
            for i in range(300):
                # Received over the last 70 days (three months at least), one in the future.
                received = now - timedelta(hours=(i * 5) % (70 * 24)) if i else now + timedelta(days=400)
                cursor.execute(
                    "INSERT INTO events_usageevent (app_id, customer_id, event_id, event_name, timestamp, "
                    "properties, received_at) VALUES (%s, %s, %s, 'api_call', %s, %s::jsonb, %s)",
                    [app.pk, customer.pk, f"e-{i}", received - timedelta(days=1), f'{{"n": {i}}}', received],
                )
            cursor.execute("DELETE FROM events_usageevent WHERE event_id = 'e-299'")  # its id is never reused
        before = stored()

        migrate(AFTER)

        assert relkind() == "p"
        assert stored() == before
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT (app_id, event_id)) FROM events_usageeventkey")
            assert cursor.fetchone() == (299, 299)
            # Stored before: in the partition of the ids below this month's, whatever their times.
            cursor.execute(f"SELECT count(*) FROM events_usageevent_before_p{now:%Y_%m}")
            assert cursor.fetchone() == (299,)
        migrate()  # the ingest below writes what the later migrations made
        from events.services import usage_events_ingest

        again = usage_events_ingest(
            app=app,
            raw_events=[
                {"eventName": "api_call", "customerId": customer.platform_id, "eventId": e}
                for e in ("e-5", "new")
            ],
        )
        assert (again.accepted, again.duplicates) == (1, 1)
        new_id = stored()[-1][0]
        assert new_id >> 40 == (now.year - 2000) * 12 + now.month - 1  # this month's ids
        with connection.cursor() as cursor:
            cursor.execute("SELECT tableoid::regclass::text FROM events_usageevent WHERE id = %s", [new_id])
            assert cursor.fetchone() == (f"events_usageevent_p{now:%Y_%m}",)

        migrate(BEFORE)

        assert relkind() == "r"
        assert [row for row in stored() if row[0] != new_id] == before
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('events_usageeventkey')")
            assert cursor.fetchone() == (None,)
    finally:
        migrate()
