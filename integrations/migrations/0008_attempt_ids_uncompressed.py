"""An attempt's delivery ids are kept out of line but not compressed: random UUIDs do not compress,
and PostgreSQL tried each time (pglz over the 40 KB of a 1,100-delivery request's ids, about 3% of
its CPU in bench.segment_delivery's throughput phase), then stored them as they were."""

from django.db import migrations

SQL = "ALTER TABLE integrations_attempt ALTER COLUMN delivery_ids SET STORAGE {}"


def uncompressed(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL.format("EXTERNAL"))


def compressed(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL.format("EXTENDED"))


class Migration(migrations.Migration):
    dependencies = [("integrations", "0007_backfill_items")]

    operations = [migrations.RunPython(uncompressed, compressed)]
