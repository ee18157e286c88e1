from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "integrations.sources"
    label = "sources"
    verbose_name = "Sources"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from hub.config_apply import section_register

        from .config import sources_apply

        section_register(level="app", key="sources", apply=sources_apply)
        connection_created.connect(_json_as_text, dispatch_uid="sources_json_as_text")


def _json_as_text(sender, connection, **kwargs) -> None:
    """Load `json` columns (the inbox's) as text, as Django has psycopg load `jsonb`: the JSON
    field decodes the text itself, and the inbox workers decode it with orjson."""
    if connection.vendor == "postgresql":
        from psycopg.types.string import TextLoader

        connection.connection.adapters.register_loader("json", TextLoader)
