from django.apps import AppConfig
from django.db.models.signals import pre_delete


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Usage events"

    def ready(self) -> None:
        from hub.config_apply import section_register
        from hub.services.customer_merge import customer_merge_register

        from .metrics.limits import usage_signals_customer_merge
        from .metrics.rollup_store import metric_rows_on_delete
        from .metrics.rollups import rollups_customer_merge
        from .metrics.services import metrics_apply
        from .models import Metric, MetricRollup, MetricUniqueValue, UsageSignal

        section_register(level="app", key="metrics", apply=metrics_apply)
        # A customer merge adds up the rollup buckets both customers have (one call moves both
        # tables) and drops the placeholder's usage signals.
        customer_merge_register(
            key="events.rollups", models=(MetricRollup, MetricUniqueValue), merge=rollups_customer_merge
        )
        customer_merge_register(
            key="events.usage_signals", models=(UsageSignal,), merge=usage_signals_customer_merge
        )
        # The rollup tables' metric foreign keys do not cascade (no index of metric_id alone).
        pre_delete.connect(metric_rows_on_delete, sender=Metric, dispatch_uid="events.metric_rows")
