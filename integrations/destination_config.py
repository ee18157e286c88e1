"""`hub_apply` section `destinations` (workspace level): Metronome, Kable and webhook destinations
and their subscriptions.

    "destinations": [{"name": "Metronome", "kind": "metronome", "secret": "…", "apps": ["Upsell"],
                      "subscriptions": [{"name": "Send event", "trigger": "type = \\"track\\"",
                                         "fields": {"customer_id": {"path": "$.customer.platformId"}}}]}]

Destinations are matched by name in the workspace, subscriptions by name in their destination.
What an entry omits keeps the stored value (a new object gets the default, a new destination its
kind's default subscriptions); `null` clears a destination's `url` (the vendor's host), `apps` and
`config`. A declared `secret` is never printed; omitted or null keeps the stored one, and a
different one replaces it (for a webhook, a rotation: both sign until it ends). A webhook created
without one gets a generated `whsec_` secret, printed once, in the run that created it.
"""

from __future__ import annotations

from typing import Any

from hub.config_apply import (
    ConfigError,
    config_require,
    declared_value,
    required_text,
    section_entries,
    section_entry,
)
from hub.errors import HubError
from hub.models import App, Workspace

from .connectors import connector_for
from .destinations import DESTINATION_KINDS, destination_save, subscription_save
from .models import Integration, Subscription

_DESTINATION_KEYS = {"name", "kind", "secret", "url", "apps", "config", "enabled", "subscriptions"}
_SUBSCRIPTION_KEYS = {"name", "action", "trigger", "fields", "enabled"}


def _apps(workspace: Workspace, spec: dict, existing: Integration | None, path: str) -> list[App]:
    if "apps" not in spec and existing is not None:
        return list(existing.apps.all())
    names = spec.get("apps") or []  # null clears
    config_require(
        isinstance(names, list) and all(isinstance(n, str) for n in names), path, "must be app names"
    )
    apps = list(App.objects.filter(workspace=workspace, name__in=names))
    missing = sorted(set(names) - {a.name for a in apps})
    config_require(not missing, path, f"no app named {', '.join(missing)} in this workspace")
    return apps


def destinations_apply(*, workspace: Workspace, value: object, path: str) -> list[dict[str, Any]]:
    """Apply the `destinations` list of a workspace; return what exists (no declared secret)."""
    out = []
    for here, spec in section_entries(value, path=path, what="destination", keys=_DESTINATION_KEYS):
        name = required_text(spec, "name", path=here, message="a destination name is required")
        existing = Integration.objects.filter(workspace=workspace, name=name.strip()).first()
        kinds = ", ".join(DESTINATION_KINDS)
        if existing is not None:
            config_require(
                existing.kind in DESTINATION_KINDS,
                f"{here}.name",
                f"{existing.name!r} is a {existing.kind} integration (declare it under integrations)",
            )
            config_require(
                spec.get("kind", existing.kind) == existing.kind,
                f"{here}.kind",
                f"is {existing.kind}: a destination's kind cannot change",
            )
        kind = existing.kind if existing is not None else spec.get("kind")
        config_require(kind in DESTINATION_KINDS, f"{here}.kind", f"must be one of {kinds}")
        secret = spec.get("secret")
        config_require(secret is None or isinstance(secret, str), f"{here}.secret", "must be text")
        if existing is not None and secret == existing.secret:
            secret = None  # unchanged: saving it again would clear a "needs attention" it still deserves
        url = declared_value(spec, "url", obj=existing, default="", attr="custom_host", cleared="", path=here)
        config_require(isinstance(url, str), f"{here}.url", "must be a URL")
        config = declared_value(spec, "config", obj=existing, default={}, cleared={}, path=here)
        config_require(isinstance(config, dict), f"{here}.config", "must be an object")
        enabled = declared_value(spec, "enabled", obj=existing, default=True, path=here)
        config_require(isinstance(enabled, bool), f"{here}.enabled", "must be true or false")
        apps = _apps(workspace, spec, existing, f"{here}.apps")
        subscriptions = spec.get("subscriptions") or []
        config_require(isinstance(subscriptions, list), f"{here}.subscriptions", "must be a list")
        try:
            integration = destination_save(
                workspace=workspace, kind=kind, name=name, integration=existing, secret=secret,
                url=url, apps=apps, config=config, enabled=enabled,
            )  # fmt: skip
        except HubError as exc:
            raise ConfigError(f"{here}: {exc}") from None
        result: dict[str, Any] = {"name": integration.name, "kind": kind, "id": integration.pk}
        result["created"] = existing is None
        if existing is None and kind == Integration.Kind.WEBHOOK and not secret:
            result["signing_secret"] = integration.secret  # generated: the receiver needs it
        result["subscriptions"] = [
            _apply_subscription(integration, sub, f"{here}.subscriptions[{j}]")
            for j, sub in enumerate(subscriptions)
        ]
        out.append(result)
    return out


def _apply_subscription(integration: Integration, spec: Any, path: str) -> dict:
    spec = section_entry(spec, path=path, what="subscription", keys=_SUBSCRIPTION_KEYS)
    name = required_text(spec, "name", path=path, message="a subscription name is required")
    existing = Subscription.objects.filter(integration=integration, name=name.strip()).first()
    actions = connector_for(integration.kind).actions
    only = next(iter(actions)) if len(actions) == 1 else None
    action = declared_value(spec, "action", obj=existing, default=only, path=path)
    config_require(action in actions, f"{path}.action", f"must be one of {', '.join(sorted(actions))}")
    trigger = declared_value(spec, "trigger", obj=existing, default=actions[action].trigger, path=path)
    config_require(isinstance(trigger, str), f"{path}.trigger", "must be a trigger (text)")
    fields = declared_value(spec, "fields", obj=existing, default=actions[action].fields, path=path)
    config_require(isinstance(fields, dict), f"{path}.fields", "must be an object of target: value spec")
    enabled = declared_value(spec, "enabled", obj=existing, default=True, path=path)
    config_require(isinstance(enabled, bool), f"{path}.enabled", "must be true or false")
    try:
        subscription = subscription_save(
            integration=integration, subscription=existing, name=name, action=action,
            trigger=trigger, fields=fields, enabled=enabled,
        )  # fmt: skip
    except HubError as exc:
        where = {"Trigger": ".trigger", "Mapping": ".fields"}.get(str(exc).split(":", 1)[0], "")
        raise ConfigError(f"{path}{where}: {exc}") from None
    return {"name": subscription.name, "action": subscription.action, "created": existing is None}
