from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "integrations.sources"
    label = "sources"
    verbose_name = "Sources"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hub.config_apply import section_register

        from .config import sources_apply

        section_register(level="app", key="sources", apply=sources_apply)
