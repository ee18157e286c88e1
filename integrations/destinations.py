"""Write paths of destinations (integrations of the kinds that take usage events: Metronome, Kable,
signed webhooks) and their subscriptions."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from hub.errors import HubError
from hub.models import App, Workspace

from .connectors import connector_for
from .forwarding import app_forwarding_refresh, subscription_compile
from .models import Integration, Subscription
from .outbound import OutboundRefused, url_check
from .services import integration_apps_check, subscriptions_create_defaults
from .sources.mapping_engine import MappingError
from .sources.triggers import TriggerError
from .vendors.webhook.connector import secret_generate, secret_key

DESTINATION_KINDS = (
    Integration.Kind.METRONOME,
    Integration.Kind.KABLE,
    Integration.Kind.CHARTMOGUL,
    Integration.Kind.MANTLE,
    Integration.Kind.WEBHOOK,
)


def _url_checked(url: str, *, required: bool) -> str:
    url = (url or "").strip()
    if not url:
        if required:
            raise HubError("Enter the URL to send to.")
        return ""
    try:
        url_check(url)
    except (OutboundRefused, OSError) as exc:
        raise HubError(f"The URL cannot be used: {exc}") from None
    return url


@transaction.atomic
def destination_save(
    *,
    workspace: Workspace,
    kind: str,
    name: str,
    integration: Integration | None = None,
    secret: str | None = None,
    url: str = "",
    apps: list[App] | None = None,
    config: dict[str, Any] | None = None,
    enabled: bool = True,
) -> Integration:
    """Create or update a destination; a new one gets its kind's default subscriptions. A blank
    `secret` keeps the stored one (a new webhook without one gets a generated `whsec_` secret);
    `url` is the base URL for Metronome, Kable and Mantle (blank: the vendor's) and the endpoint of
    a webhook; ChartMogul's webhook URL is its credential (`secret`, or `url` when that is blank)."""
    if kind not in DESTINATION_KINDS:
        raise HubError(f"Unknown destination kind {kind!r}.")
    if integration is not None and integration.kind != kind:
        raise HubError("A destination's kind cannot change.")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise HubError("A destination needs a name of at most 100 characters.")
    clash = Integration.objects.filter(workspace=workspace, name__iexact=name)
    if integration is not None:
        clash = clash.exclude(pk=integration.pk)
    if clash.exists():
        raise HubError(f"An integration named {name!r} already exists in this workspace.")
    apps = list(apps or ())
    integration_apps_check(workspace=workspace, apps=apps)
    secret = (secret or "").strip()
    if kind == Integration.Kind.CHARTMOGUL:
        # ChartMogul's webhook URL is the credential: kept encrypted as the secret, never shown.
        secret = _url_checked(secret or url, required=integration is None)
        url = ""
    url = _url_checked(url, required=kind == Integration.Kind.WEBHOOK)
    config = dict(config or {})
    if kind == Integration.Kind.WEBHOOK:
        if not secret and integration is None:
            secret = secret_generate()
        if secret:
            try:
                secret_key(secret)
            except ValueError as exc:
                raise HubError(f"The signing secret cannot be used: {exc}.") from None
    elif integration is None and not secret:
        raise HubError(f"Enter the {connector_for(kind).label} credential.")
    if kind == Integration.Kind.KABLE and not str(config.get("client_id", "")).strip():
        raise HubError("Enter the Kable client id.")
    if kind == Integration.Kind.MANTLE and not str(config.get("app_id", "")).strip():
        raise HubError("Enter the Mantle app id.")
    new = integration is None
    if new:
        integration = Integration(workspace=workspace, kind=kind)
    if secret:
        if kind == Integration.Kind.WEBHOOK and integration.secret and integration.secret != secret:
            integration.previous_secret = integration.secret  # both sign until the rotation ends
        integration.secret = secret
        integration.needs_attention, integration.attention_reason = False, ""
    integration.name = name
    integration.region = Integration.Region.CUSTOM
    integration.custom_host = url
    integration.config = config
    integration.enabled = enabled
    integration.save()
    old_apps = set(integration.apps.values_list("pk", flat=True)) if not new else set()
    integration.apps.set(apps)
    if new:
        subscriptions_create_defaults(integration=integration)
    app_forwarding_refresh(app_ids=old_apps | {a.pk for a in apps})
    return integration


def webhook_rotation_end(*, integration: Integration) -> None:
    """Stop signing with the previous secret (the receiver has the new one)."""
    Integration.objects.filter(pk=integration.pk).update(previous_secret="")


@transaction.atomic
def subscription_save(
    *,
    integration: Integration,
    name: str,
    action: str,
    trigger: str,
    fields: dict[str, Any],
    subscription: Subscription | None = None,
    enabled: bool = True,
) -> Subscription:
    """Create or update a subscription after compiling its trigger and mapping against the
    action's targets (HubError naming what is wrong)."""
    connector = connector_for(integration.kind)
    if action not in connector.actions:
        raise HubError(
            f"{connector.label} has no action {action!r} ({', '.join(sorted(connector.actions))})."
        )
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise HubError("A subscription needs a name of at most 100 characters.")
    if subscription is None:
        subscription = Subscription(integration=integration, item_kind=connector.actions[action].item_kind)
    subscription.name, subscription.action = name, action
    subscription.trigger, subscription.fields, subscription.enabled = trigger, fields, enabled
    try:
        subscription_compile(subscription)
    except TriggerError as exc:
        raise HubError(f"Trigger: {exc}") from None
    except MappingError as exc:
        raise HubError(f"Mapping: {exc}") from None
    if (
        Subscription.objects.filter(integration=integration, name__iexact=name)
        .exclude(pk=subscription.pk)
        .exists()
    ):
        raise HubError(f"A subscription named {name!r} already exists on this destination.")
    subscription.save()
    app_forwarding_refresh(app_ids=set(integration.apps.values_list("pk", flat=True)))
    return subscription
