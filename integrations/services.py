"""Write paths of the integrations package: integrations, test events, retries and replays."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from hub.errors import HubError
from hub.models import Activity, App, Workspace
from hub.races import unique_race_safe

from .connectors import connector_for
from .delivery import delivery_send_now
from .forwarding import app_forwarding_refresh
from .models import Attempt, Delivery, Integration, Replay, Subscription
from .outbound import OutboundRefused, url_check

SEND_TASK = "integrations.deliveries_send"


def _enqueue_send(integration_id: int) -> None:
    from .tasks import deliveries_send

    transaction.on_commit(lambda: deliveries_send.delay(integration_id))


@unique_race_safe
@transaction.atomic
def integration_save(
    *,
    workspace: Workspace,
    integration: Integration | None = None,
    name: str,
    write_key: str | None = None,
    region: str = Integration.Region.US,
    custom_host: str = "",
    apps: list[App] | None = None,
    activities: list[str] | None = None,
    user_id_field: str = "",
    enabled: bool = True,
) -> Integration:
    """Create or update a Segment integration; a blank `write_key` keeps the stored one."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise HubError("An integration needs a name of at most 100 characters.")
    clash = Integration.objects.filter(workspace=workspace, name__iexact=name)
    if integration is not None:
        clash = clash.exclude(pk=integration.pk)
    if clash.exists():
        raise HubError(f"An integration named {name!r} already exists in this workspace.")
    custom_host = integration_destination_check(region=region, custom_host=custom_host)
    unknown = set(activities or ()) - set(Activity.Kind.values)
    if unknown:
        raise HubError(f"Unknown activities: {', '.join(sorted(unknown))}.")
    apps = list(apps or ())
    integration_apps_check(workspace=workspace, apps=apps)
    write_key = (write_key or "").strip()
    if integration is None:
        if not write_key:
            raise HubError("Enter the Segment write key.")
        integration = Integration(workspace=workspace, kind=Integration.Kind.SEGMENT)
    if write_key:
        integration.write_key = write_key
        integration.needs_attention, integration.attention_reason = False, ""
    integration.name = name
    integration.region = region
    integration.custom_host = custom_host
    integration.activities = [k for k in Activity.Kind.values if k in set(activities or ())]
    integration.user_id_field = (user_id_field or "").strip()[:100]
    integration.enabled = enabled
    new = integration.pk is None
    old_apps = set() if new else set(integration.apps.values_list("pk", flat=True))
    integration.save()
    integration.apps.set(apps)
    if new:
        # Usage events, customers and contacts too, once turned on (activities only by default).
        subscriptions_create_defaults(integration=integration, enabled=False)
    app_forwarding_refresh(app_ids=old_apps | {a.pk for a in apps})
    return integration


def subscriptions_create_defaults(*, integration: Integration, enabled: bool = True) -> None:
    """Give an integration its kind's default subscriptions (Segment's defaults), one per action."""
    for action in connector_for(integration.kind).actions.values():
        Subscription.objects.get_or_create(
            integration=integration,
            name=action.label,
            defaults={
                "item_kind": action.item_kind,
                "action": action.name,
                "trigger": action.trigger,
                "fields": action.fields,
                "enabled": enabled,
            },
        )


def integration_destination_check(*, region: str, custom_host: str) -> str:
    """The custom host to keep (stripped; "" unless the region is custom), or HubError when the
    region is unknown or the host fails the outbound-URL guard (integrations.outbound)."""
    if region not in Integration.Region.values:
        raise HubError("Choose the US or EU region, or a custom host.")
    custom_host = (custom_host or "").strip()
    if region != Integration.Region.CUSTOM:
        return ""
    if not custom_host:
        raise HubError("A custom region needs the host URL.")
    try:
        url_check(custom_host)
    except (OutboundRefused, OSError) as exc:
        raise HubError(f"The custom host cannot be used: {exc}") from None
    return custom_host


def integration_apps_check(*, workspace: Workspace, apps: list[App]) -> None:
    """HubError unless every app belongs to the integration's workspace."""
    if any(app.workspace_id != workspace.pk for app in apps):
        raise HubError("Apps must belong to this workspace.")


def integration_send_test(*, integration: Integration) -> tuple[Delivery, Attempt | None]:
    """Send a test track call now; it shows in the delivery log with Segment's answer."""
    delivery_id = uuid.uuid4()
    message = connector_for(integration.kind).test_message(
        integration=integration, message_id=str(delivery_id)
    )
    delivery = Delivery.objects.create(
        id=delivery_id,
        integration=integration,
        item_kind=Delivery.ItemKind.TEST,
        item_id=str(delivery_id),
        message_id=str(delivery_id),
        message=orjson.dumps(message).decode(),
        next_attempt_at=timezone.now(),
    )
    attempt = delivery_send_now(delivery=delivery)
    delivery.refresh_from_db()
    return delivery, attempt


@transaction.atomic
def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Put a failed or dead delivery back in the queue now, with a fresh retry window."""
    if delivery.status not in (Delivery.Status.FAILED, Delivery.Status.DEAD):
        raise HubError("Only failed or dead deliveries can be retried.")
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.PENDING, next_attempt_at=now, retry_window_start=now, updated_at=now
    )
    _enqueue_send(delivery.integration_id)
    delivery.refresh_from_db()
    return delivery


@transaction.atomic
def deliveries_replay(*, integration: Integration, since: datetime, until: datetime, by: str = "") -> Replay:
    """Queue again every failed and dead delivery created in [since, until)."""
    if until <= since:
        raise HubError("The end of the range must be after its start.")
    now = timezone.now()
    replay = Replay.objects.create(integration=integration, since=since, until=until, created_by=by[:255])
    total = (
        Delivery.objects.filter(
            integration=integration,
            status__in=[Delivery.Status.FAILED, Delivery.Status.DEAD],
            created_at__gte=since,
            created_at__lt=until,
        )
        .exclude(item_kind=Delivery.ItemKind.TEST)
        .update(
            status=Delivery.Status.PENDING,
            next_attempt_at=now,
            retry_window_start=now,
            replay=replay,
            updated_at=now,
        )
    )
    replay.total = total
    replay.save(update_fields=["total"])
    if total:
        _enqueue_send(integration.pk)
    return replay


def integrations_apply(*, workspace: Workspace, value: object, path: str) -> list[dict[str, Any]]:
    """hub_apply's `integrations` section: Segment integrations matched by name.

    What an entry omits keeps the integration's value (a new one: US region, no apps, every
    activity, enabled); the write key is required for a new one, and omitted or null keeps the
    stored one. `null` clears `apps`, `activities`, `user_id_field` and `custom_host`.
    """
    from hub.config_apply import ConfigError, declared_value, section_entries

    allowed = {
        "name",
        "kind",
        "write_key",
        "region",
        "custom_host",
        "apps",
        "activities",
        "user_id_field",
        "enabled",
    }
    out = []
    for where, spec in section_entries(value, path=path, what="integration", keys=allowed):
        if spec.get("kind", "segment") != "segment":
            raise ConfigError(f"{where}.kind: only segment is supported")
        existing = Integration.objects.filter(workspace=workspace, name=spec.get("name")).first()
        if existing is not None and existing.kind != Integration.Kind.SEGMENT:
            raise ConfigError(f"{where}.name: {existing.name!r} is a {existing.kind} destination")
        activities = declared_value(
            spec, "activities", obj=existing, default=list(Activity.Kind.values), cleared=[], path=where
        )
        app_names = spec.get("apps") or []  # null clears
        if not isinstance(app_names, list) or not isinstance(activities, list):
            raise ConfigError(f"{where}: apps and activities must be lists")
        if "apps" not in spec and existing is not None:
            apps = list(existing.apps.all())
        else:
            names = [a for a in app_names if isinstance(a, str)]
            apps = list(App.objects.filter(workspace=workspace, name__in=names))
            missing = sorted(set(app_names) - {a.name for a in apps}, key=str)
            if missing:
                missing_names = ", ".join(map(str, missing))
                raise ConfigError(f"{where}.apps: no app named {missing_names} in this workspace")
        enabled = declared_value(spec, "enabled", obj=existing, default=True, path=where)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: must be true or false")
        try:
            integration = integration_save(
                workspace=workspace,
                integration=existing,
                name=spec.get("name") or "",
                write_key=spec.get("write_key") or None,
                region=declared_value(spec, "region", obj=existing, default="us", path=where),
                custom_host=declared_value(
                    spec, "custom_host", obj=existing, default="", cleared="", path=where
                ),
                apps=apps,
                activities=activities,
                user_id_field=declared_value(
                    spec, "user_id_field", obj=existing, default="", cleared="", path=where
                ),
                enabled=enabled,
            )
        except HubError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out.append({"name": integration.name, "id": integration.pk, "created": existing is None})
    return out
