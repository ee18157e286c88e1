"""Pending inbox messages wait in batches (one row lock per request); the inbox leaves room on its
pages so that marking a message processed is a HOT update (the pending index is gone: no indexed
column changes); its JSON columns are `json` (written once, read whole), and its source reference
is checked through the batch (no per-row constraint).

Stop the web and worker processes of the previous release before migrating: a web process of the
previous release would insert pending messages without a batch, which no worker then finds. The
type change rewrites the inbox table once (one ALTER TABLE), holding its lock meanwhile.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import integrations.sources.models

BATCH = 500
JSON_COLUMNS = ("payload", "matched", "results")


def batch_pending(apps, schema_editor):
    """Put the messages still pending into batches, so the workers find them."""
    InboxMessage = apps.get_model("sources", "InboxMessage")
    InboxBatch = apps.get_model("sources", "InboxBatch")
    pending = InboxMessage.objects.filter(status="pending").order_by("id").values_list("source_id", "id")
    by_source: dict[int, list[int]] = {}
    for source_id, message_id in pending.iterator():
        ids = by_source.setdefault(source_id, [])
        ids.append(message_id)
        if len(ids) == BATCH:
            InboxBatch.objects.create(source_id=source_id, message_ids=ids, size=len(ids))
            by_source[source_id] = []
    for source_id, ids in by_source.items():
        if ids:
            InboxBatch.objects.create(source_id=source_id, message_ids=ids, size=len(ids))


def fillfactor(value: int):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE sources_inboxmessage SET (fillfactor = {value})")

    return apply


def json_columns(to: str):
    """All three columns in one ALTER TABLE: one rewrite of the table, not three (PostgreSQL; the
    field is text elsewhere either way)."""

    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            changes = ", ".join(f"ALTER COLUMN {c} TYPE {to} USING {c}::{to}" for c in JSON_COLUMNS)
            schema_editor.execute(f"ALTER TABLE sources_inboxmessage {changes}")

    return apply


def delete_orphans(apps, schema_editor):
    """Before the per-row constraint comes back (migrating backwards): messages of deleted sources."""
    InboxMessage = apps.get_model("sources", "InboxMessage")
    Source = apps.get_model("sources", "Source")
    InboxMessage.objects.exclude(source_id__in=Source.objects.values("id")).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("sources", "0003_inbox_source_fk_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="InboxBatch",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("message_ids", models.JSONField()),
                ("size", models.PositiveIntegerField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RemoveIndex(
            model_name="inboxmessage",
            name="inbox_pending",
        ),
        migrations.AddField(
            model_name="inboxbatch",
            name="source",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="sources.source"
            ),
        ),
        # Before the rewrite below, so the rewritten pages keep the room.
        migrations.RunPython(fillfactor(40), fillfactor(100)),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(json_columns("json"), json_columns("jsonb"))],
            state_operations=[
                migrations.AlterField(
                    model_name="inboxmessage",
                    name=name,
                    field=integrations.sources.models.JSONTextField(**options),
                )
                for name, options in (
                    ("matched", {"blank": True, "default": list}),
                    ("payload", {}),
                    ("results", {"blank": True, "default": list}),
                )
            ],
        ),
        migrations.AlterField(
            model_name="inboxmessage",
            name="source",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="inbox",
                to="sources.source",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, delete_orphans),
        migrations.RunPython(batch_pending, migrations.RunPython.noop),
    ]
