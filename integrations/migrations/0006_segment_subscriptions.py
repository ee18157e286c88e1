"""Existing Segment integrations get Segment's default subscriptions (usage events as track,
customers as group, contacts as identify), turned off: what they send does not change."""

from django.db import migrations


def forwards(apps, schema_editor):
    from integrations.connectors import connector_for

    Integration = apps.get_model("integrations", "Integration")
    Subscription = apps.get_model("integrations", "Subscription")
    actions = connector_for("segment").actions.values()
    for integration in Integration.objects.filter(kind="segment"):
        for action in actions:
            Subscription.objects.get_or_create(
                integration=integration,
                name=action.label,
                defaults={
                    "item_kind": action.item_kind, "action": action.name, "trigger": action.trigger,
                    "fields": action.fields, "enabled": False,
                },
            )


class Migration(migrations.Migration):
    dependencies = [("integrations", "0005_chartmogul_mantle_customers")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
