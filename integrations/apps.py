from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from .vendors import vendors_load

        vendors_load()  # every platform registers its formats, presets and connector
        from hub.config_apply import section_register

        from .destination_config import destinations_apply
        from .services import integrations_apply

        section_register(level="workspace", key="integrations", apply=integrations_apply)
        section_register(level="workspace", key="destinations", apply=destinations_apply)
