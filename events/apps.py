from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Usage events"

    def ready(self) -> None:
        from hub.config_apply import section_register

        from .metrics.services import metrics_apply

        section_register(level="app", key="metrics", apply=metrics_apply)
