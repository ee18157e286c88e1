from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Usage events"

    def ready(self) -> None:
        from hub.config_apply import section_register
        from hub.services.customer_merge import customer_merge_register

        from .metrics.limits import usage_signals_customer_merge
        from .metrics.rollups import rollups_customer_merge
        from .metrics.services import metrics_apply
        from .models import MetricRollup, MetricUniqueValue, UsageSignal

        section_register(level="app", key="metrics", apply=metrics_apply)
        # A customer merge adds up the rollup buckets both customers have (one call moves both
        # tables) and drops the placeholder's usage signals.
        customer_merge_register(
            key="events.rollups", models=(MetricRollup, MetricUniqueValue), merge=rollups_customer_merge
        )
        customer_merge_register(
            key="events.usage_signals", models=(UsageSignal,), merge=usage_signals_customer_merge
        )
