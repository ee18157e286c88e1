"""Pending inbox messages wait in batches (one row lock per request); the inbox leaves room on its
pages so that marking a message processed is a HOT update (the pending index is gone: no indexed
column changes); its JSON columns are `json` (written once, read whole), and its source reference
is checked through the batch (no per-row constraint)."""

import django.db.models.deletion
import integrations.sources.models
import django.utils.timezone
from django.db import migrations, models


BATCH = 500


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


class Migration(migrations.Migration):

    dependencies = [
        ('sources', '0003_inbox_source_fk_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='InboxBatch',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('message_ids', models.JSONField()),
                ('size', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RemoveIndex(
            model_name='inboxmessage',
            name='inbox_pending',
        ),
        migrations.AddField(
            model_name='inboxbatch',
            name='source',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='sources.source'),
        ),
        migrations.AlterField(
            model_name='inboxmessage',
            name='matched',
            field=integrations.sources.models.JSONTextField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name='inboxmessage',
            name='payload',
            field=integrations.sources.models.JSONTextField(),
        ),
        migrations.AlterField(
            model_name='inboxmessage',
            name='results',
            field=integrations.sources.models.JSONTextField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name='inboxmessage',
            name='source',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='inbox', to='sources.source'),
        ),
        migrations.RunPython(batch_pending, migrations.RunPython.noop),
        migrations.RunPython(fillfactor(40), fillfactor(100)),
    ]
