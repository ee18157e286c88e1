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
        connection_created.connect(_connection_prepare, dispatch_uid="sources_json_as_text")


def _connection_prepare(sender, connection, **kwargs) -> None:
    """Each new connection set up for the inbox's columns by its store (`json` loaded as text)."""
    from .inbox_store import store

    store(connection).connection_prepare(connection)
