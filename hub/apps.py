from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Hub core"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the hardening checks)
