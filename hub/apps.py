from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Hub core"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the hardening checks)
        from .config_apply import section_register
        from .observability import checks as _metrics_checks  # noqa: F401  (and the /metrics ones)
        from .services.plans import plans_apply

        section_register(level="app", key="plans", apply=plans_apply)
