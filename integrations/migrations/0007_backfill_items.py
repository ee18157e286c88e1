"""A backfill sends usage events (every existing one did) or customers and their contacts."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_segment_subscriptions"),
    ]

    operations = [
        migrations.AddField(
            model_name="backfill",
            name="items",
            field=models.CharField(
                choices=[("usage_events", "Usage events"), ("customers", "Customers and contacts")],
                default="usage_events",
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="backfill",
            constraint=models.CheckConstraint(
                condition=models.Q(("items__in", ["usage_events", "customers"])), name="backfill_items_valid"
            ),
        ),
    ]
