"""The operator's console: Django's admin, branded as the hub and grouped by what an operator looks for.

`HubAdminConfig` replaces `django.contrib.admin` in INSTALLED_APPS so `admin.site` is a
`HubAdminSite`; every `@admin.register` of the packages lands on it unchanged.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

# The sections of the index and the sidebar, in order: (title, [(app_label, model_name), ...]).
# Models not listed keep their own app's section after these.
SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Workspaces and access",
        [
            ("hub", "workspace"),
            ("hub", "membership"),
            ("hub", "invitation"),
            ("hub", "app"),
            ("hub", "apikey"),
            ("auth", "user"),
            ("auth", "group"),
        ],
    ),
    (
        "Customers and billing",
        [
            ("hub", "customer"),
            ("hub", "contact"),
            ("hub", "plan"),
            ("hub", "installation"),
            ("hub", "subscription"),
            ("hub", "review"),
            ("hub", "activity"),
        ],
    ),
    (
        "Usage",
        [
            ("events", "usageevent"),
            ("events", "usageeventretention"),
            ("events", "metric"),
            ("events", "planusagelimit"),
            ("events", "usagesignal"),
            ("events", "metricrollup"),
            ("events", "metricuniquevalue"),
            ("events", "rollupbatch"),
            ("events", "forwardbatch"),
            ("events", "usageeventkey"),
        ],
    ),
    (
        "Sources",
        [
            ("sources", "source"),
            ("sources", "mapping"),
            ("sources", "inboxmessage"),
            ("sources", "inboxbatch"),
        ],
    ),
    (
        "Integrations",
        [
            ("integrations", "integration"),
            ("integrations", "subscription"),
            ("integrations", "delivery"),
            ("integrations", "attempt"),
            ("integrations", "replay"),
            ("integrations", "backfill"),
            ("hub", "customerforward"),
        ],
    ),
]


class HubAdminSite(admin.AdminSite):
    site_header = "Integration hub · Operator's console"
    site_title = "Integration hub"
    index_title = "Operator's console"

    def get_app_list(self, request, app_label=None):
        """Django's list, regrouped into the product's sections (an app's own page stays as is)."""
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        models = {
            (app["app_label"], model["object_name"].lower()): (app, model)
            for app in app_list
            for model in app["models"]
        }
        sections = []
        for title, keys in SECTIONS:
            found = [models.pop(key) for key in keys if key in models]
            if found:
                first_app = found[0][0]
                sections.append(
                    {
                        **first_app,
                        "name": title,
                        "app_label": first_app["app_label"],
                        "models": [model for _, model in found],
                    }
                )
        rest: dict[str, dict] = {}
        for (label, _), (app, model) in models.items():
            rest.setdefault(label, {**app, "models": []})["models"].append(model)
        return sections + list(rest.values())


class HubAdminConfig(AdminConfig):
    default_site = "hub.admin_site.HubAdminSite"
