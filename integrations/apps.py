from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from hub.config_apply import section_register

        from .services import integrations_apply
        from .vendors import vendors_load

        vendors_load()
        section_register(level="workspace", key="integrations", apply=integrations_apply)
