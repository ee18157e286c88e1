"""Usage events partitioned by month (PostgreSQL), with a dedupe-key table and a retention setting
per app (docs/metrics.md, "Raw events: partitions, retention and dedupe").

On PostgreSQL the existing table is copied, ids and all, into a new table partitioned by range of
`id`, whose new ids carry their month in their high bits (`events.partitions`): the events stored
so far go into one partition of the ids below this month's (`events_usageevent_before_pYYYY_MM`),
and this month's and the next three months' partitions and a DEFAULT one are made. Every event's
key goes into `events_usageeventkey`, and the old table is dropped, in the migration's one
transaction (the events table is locked meanwhile: about a minute per few million rows). The
reverse copies the events back into a plain table with its unique (app_id, event_id): an event id
stored twice (sent again after the dedupe window) keeps its first event only. SQLite keeps its
plain table.
"""

from datetime import UTC, datetime

import django.db.models.deletion
from django.db import migrations, models

COLUMNS = "id, event_id, event_name, timestamp, properties, received_at, app_id, customer_id"
INDEXES = {
    "usage_event_app_time": '(app_id, "timestamp" DESC, id DESC)',
    "usage_event_customer_time": '(customer_id, "timestamp" DESC, id DESC)',
    "usage_event_name_time": '(app_id, event_name, "timestamp" DESC, id DESC)',
}
FOREIGN_KEYS = (
    'CONSTRAINT "events_usageevent_app_id_8967e2c6_fk_hub_app_id" FOREIGN KEY (app_id) '
    "REFERENCES hub_app (id) DEFERRABLE INITIALLY DEFERRED, "
    'CONSTRAINT "events_usageevent_customer_id_740f3daf_fk_hub_customer_id" FOREIGN KEY (customer_id) '
    "REFERENCES hub_customer (id) DEFERRABLE INITIALLY DEFERRED"
)
FIELDS = (
    "event_id varchar(255) NOT NULL, event_name varchar(255) NOT NULL, "
    '"timestamp" timestamptz NOT NULL, properties jsonb NOT NULL, received_at timestamptz NOT NULL, '
    "app_id bigint NOT NULL, customer_id bigint NOT NULL"
)
MONTHS_AHEAD = 3
SHIFT = 40  # events.partitions.MONTH_SHIFT
# The month of the inserting transaction in the id's high bits, for writers that give no id (the
# ORM, COPY); the ingest's statement gives the month of each event's received_at.
ID_DEFAULT = (
    "(((EXTRACT(YEAR FROM now() AT TIME ZONE 'UTC')::bigint - 2000) * 12 "
    f"+ EXTRACT(MONTH FROM now() AT TIME ZONE 'UTC')::bigint - 1) << {SHIFT}) "
    "+ nextval('events_usageevent_id_seq')"
)


def _month_index(at):
    return (at.year - 2000) * 12 + at.month - 1


def _month_name(index):
    return f"{2000 + index // 12}_{index % 12 + 1:02}"


def _set_aside(cursor, suffix, sequence):
    """Rename the events table, its primary key, indexes and id sequence out of the way."""
    cursor.execute(f"ALTER TABLE events_usageevent RENAME TO events_usageevent_{suffix}")
    cursor.execute(
        f"ALTER TABLE events_usageevent_{suffix} RENAME CONSTRAINT events_usageevent_pkey "
        f"TO events_usageevent_{suffix}_pkey"
    )
    for name in INDEXES:
        cursor.execute(f"ALTER INDEX {name} RENAME TO {name}_{suffix}")
    cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO events_usageevent_{suffix}_id_seq")
    cursor.execute(f"SELECT last_value, is_called FROM events_usageevent_{suffix}_id_seq")
    return cursor.fetchone()


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        # SQLite keeps its plain table (and its unique index); the dedupe keys of its events.
        schema_editor.execute(
            "INSERT INTO events_usageeventkey (app_id, event_id, received_at) "
            "SELECT app_id, event_id, received_at FROM events_usageevent"
        )
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("LOCK TABLE events_usageevent IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT pg_get_serial_sequence('events_usageevent', 'id')")
        last_value, is_called = _set_aside(cursor, "unpartitioned", cursor.fetchone()[0])
        # Not owned by the column: Django's sequence resets (loaddata, flush) would set it to the
        # largest id, month bits included.
        cursor.execute("CREATE SEQUENCE events_usageevent_id_seq AS bigint")
        cursor.execute("SELECT setval('events_usageevent_id_seq', %s, %s)", [last_value, is_called])
        cursor.execute(
            f"CREATE TABLE events_usageevent (id bigint NOT NULL DEFAULT {ID_DEFAULT}, {FIELDS}, "
            f"CONSTRAINT events_usageevent_pkey PRIMARY KEY (id), {FOREIGN_KEYS}) PARTITION BY RANGE (id)"
        )
        for name, columns in INDEXES.items():
            cursor.execute(f"CREATE INDEX {name} ON events_usageevent {columns}")
        cursor.execute("CREATE TABLE events_usageevent_default PARTITION OF events_usageevent DEFAULT")
        this_month = _month_index(datetime.now(UTC))
        cursor.execute(
            f"CREATE TABLE events_usageevent_before_p{_month_name(this_month)} PARTITION OF events_usageevent "
            "FOR VALUES FROM (MINVALUE) TO (%s)",
            [this_month << SHIFT],
        )
        for month in range(this_month, this_month + MONTHS_AHEAD + 1):
            cursor.execute(
                f"CREATE TABLE events_usageevent_p{_month_name(month)} PARTITION OF events_usageevent "
                "FOR VALUES FROM (%s) TO (%s)",
                [month << SHIFT, (month + 1) << SHIFT],
            )
        cursor.execute(
            f"INSERT INTO events_usageevent ({COLUMNS}) SELECT {COLUMNS} FROM events_usageevent_unpartitioned"
        )
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the copied rows' foreign keys, before DDL
        cursor.execute(
            "INSERT INTO events_usageeventkey (app_id, event_id, received_at) "
            "SELECT app_id, event_id, received_at FROM events_usageevent_unpartitioned ORDER BY received_at"
        )
        cursor.execute("DROP TABLE events_usageevent_unpartitioned")
        cursor.execute("ANALYZE events_usageevent")


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("LOCK TABLE events_usageevent IN ACCESS EXCLUSIVE MODE")
        _set_aside(cursor, "partitioned", "events_usageevent_id_seq")
        cursor.execute(
            f"CREATE TABLE events_usageevent (id bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY, {FIELDS}, "
            "CONSTRAINT events_usageevent_pkey PRIMARY KEY (id), "
            "CONSTRAINT usage_event_unique_event_id UNIQUE (app_id, event_id), "
            f"{FOREIGN_KEYS})"
        )
        cursor.execute(
            f"INSERT INTO events_usageevent ({COLUMNS}) OVERRIDING SYSTEM VALUE "
            f"SELECT {COLUMNS} FROM events_usageevent_partitioned ORDER BY id "
            "ON CONFLICT (app_id, event_id) DO NOTHING"
        )
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the copied rows' foreign keys, before DDL
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('events_usageevent', 'id'), GREATEST(max(id), 1)) "
            "FROM events_usageevent_partitioned"
        )
        for name, columns in INDEXES.items():
            cursor.execute(f"CREATE INDEX {name} ON events_usageevent {columns}")
        cursor.execute("DROP TABLE events_usageevent_partitioned")  # and its partitions
        cursor.execute("DROP SEQUENCE events_usageevent_partitioned_id_seq")


def key_brin_index(apps, schema_editor):
    # The pruning finds old keys through a BRIN index (keys arrive in time order: a few pages, and
    # next to nothing to maintain on insert).
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX usage_event_key_received ON events_usageeventkey USING brin (received_at)")


def key_brin_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX usage_event_key_received")


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0007_forward_names"),
        ("hub", "0008_app_forward_usage_events"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageEventKey",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("event_id", models.CharField(max_length=255)),
                ("received_at", models.DateTimeField()),
                (
                    "app",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="hub.app",
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("app", "event_id"), name="usage_event_key_unique")],
            },
        ),
        migrations.RunPython(key_brin_index, key_brin_index_drop),
        migrations.CreateModel(
            name="UsageEventRetention",
            fields=[
                (
                    "app",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="hub.app",
                    ),
                ),
                ("days", models.PositiveIntegerField()),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "usage event retention",
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("days__gte", 1)), name="usage_event_retention_days")
                ],
            },
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="usageevent", name="usage_event_unique_event_id"),
            ],
            database_operations=[migrations.RunPython(partition, unpartition)],
        ),
    ]
