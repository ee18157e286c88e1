"""Week rows and distinct-value counters for unique counts: unique-count metrics are rebuilt."""

from django.db import migrations, models
from django.db.models import F

GRANULARITIES = [("h", "Hour"), ("d", "Day"), ("w", "Week"), ("m", "Month"), ("a", "All time")]


def rebuild_unique_metrics(apps, schema_editor):
    # Their rows lack the week rows and the counters: the sweep builds them again from the events.
    Metric = apps.get_model("events", "Metric")
    Metric.objects.filter(aggregation="unique_count").update(status="building", version=F("version") + 1)


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_metrics"),
    ]

    operations = [
        migrations.AlterField(
            model_name="metricrollup",
            name="granularity",
            field=models.CharField(choices=GRANULARITIES, max_length=1),
        ),
        migrations.AlterField(
            model_name="metricuniquevalue",
            name="granularity",
            field=models.CharField(choices=GRANULARITIES, max_length=1),
        ),
        migrations.AddIndex(
            model_name="metricrollup",
            index=models.Index(condition=models.Q(granularity="h"), fields=["bucket"], name="metric_rollup_hours"),
        ),
        migrations.AddIndex(
            model_name="metricuniquevalue",
            index=models.Index(condition=models.Q(granularity="h"), fields=["bucket"], name="metric_unique_hours"),
        ),
        migrations.RunPython(rebuild_unique_metrics, migrations.RunPython.noop),
    ]
