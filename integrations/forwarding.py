"""Usage events to destinations: the events layer leaves a `ForwardBatch` of the ids it stored
(for apps whose destinations subscribe to usage events); this module turns each batch into
deliveries on the delivery engine and deletes it in the same transaction, so each event is fanned
out once and a lost task only delays it (the sweep forwards what is left).

An event is offered to its app's subscriptions in the shape of a Segment track call, so that the
default mappings are Segment's own action code's (`$.messageId`, `$.event`, `$.properties`,
`$.context.groupId`...) and a mapping written for Segment reads the same paths:

    {"type": "track", "event": <name>, "messageId": <event id>, "timestamp": <ISO-8601>,
     "userId": <customer id>, "properties": {...}, "context": {"groupId": <customer id>},
     "customer": {"id", "platformId", "myshopifyDomain", "name", "customFields"}}

Each (subscription, event) makes one delivery whose message is rendered now, through the
subscription's trigger and mapping, and stored; a message the destination cannot take (a required
field missing after the mapping) is stored as a failed delivery saying why, never sent.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from events.models import ForwardBatch, UsageEvent
from hub.models import App

from .connectors import MessageRefused, connector_for
from .delivery import FanoutResult, deliveries_create
from .delivery_store import NewDelivery, delivery_id_for
from .models import Delivery, Integration, Subscription
from .sources.mapping_engine import (
    CompiledMapping,
    MappingError,
    MappingFailed,
    mapping_compile,
    mapping_values,
)
from .sources.triggers import TriggerError


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_message(event: dict[str, Any]) -> dict[str, Any]:
    """A stored usage event (a row of `_events_load`) as the track call mappings read."""
    customer_id = str(event["customer__public_id"])
    return {
        "type": "track",
        "event": event["event_name"],
        "messageId": event["event_id"],
        "timestamp": _iso(event["timestamp"]),
        "userId": customer_id,
        "properties": event["properties"] or {},
        "context": {"groupId": customer_id},
        "customer": {
            "id": customer_id,
            "platformId": event["customer__platform_id"],
            "myshopifyDomain": event["customer__myshopify_domain"] or None,
            "name": event["customer__name"] or None,
            "customFields": event["customer__custom_fields"] or {},
        },
    }


def subscription_compile(subscription: Subscription) -> CompiledMapping:
    """The subscription's trigger and mapping compiled against its action's targets (TriggerError
    or MappingError for a bad one)."""
    action = connector_for(subscription.integration.kind).actions[subscription.action]
    return mapping_compile(
        name=subscription.name,
        trigger=subscription.trigger,
        action=subscription.action,
        fields=subscription.fields,
        targets=action.targets,
        id=subscription.pk,
    )


def _subscriptions(app_ids: set[int]) -> dict[int, list[tuple[Subscription, CompiledMapping | None]]]:
    by_app: dict[int, list[tuple[Subscription, CompiledMapping | None]]] = defaultdict(list)
    apps_of: dict[int, list[int]] = defaultdict(list)
    links = Integration.apps.through.objects.filter(app_id__in=app_ids, integration__enabled=True)
    for integration_id, app_id in links.values_list("integration_id", "app_id"):
        apps_of[integration_id].append(app_id)
    subscriptions = Subscription.objects.filter(
        integration_id__in=set(apps_of), enabled=True, item_kind=Subscription.ItemKind.USAGE_EVENT
    ).select_related("integration")
    for subscription in subscriptions:
        try:
            compiled: CompiledMapping | None = subscription_compile(subscription)
        except (TriggerError, MappingError, KeyError):
            compiled = None  # saved through the services, so only a connector that lost the action
        for app_id in apps_of[subscription.integration_id]:
            by_app[app_id].append((subscription, compiled))
    return by_app


_EVENT_FIELDS = (
    "id", "app_id", "event_id", "event_name", "timestamp", "properties", "customer__public_id",
    "customer__platform_id", "customer__myshopify_domain", "customer__name", "customer__custom_fields",
)  # fmt: skip


def _delivery(
    subscription: Subscription, compiled: CompiledMapping | None, event: dict
) -> NewDelivery | None:
    integration = subscription.integration
    connector = connector_for(integration.kind)
    message = event_message(event)
    error = ""
    wire: dict[str, Any] = {}
    if compiled is None:
        error = f"the subscription's action {subscription.action!r} is unknown to {connector.label}"
    else:
        if not compiled.trigger(message):
            return None
        try:
            wire = connector.action_message(
                integration=integration,
                action=connector.actions[subscription.action],
                values=mapping_values(compiled, message),
            )
        except MessageRefused as exc:
            error = f"not sent: {exc}"
        except MappingFailed as exc:
            error = f"not sent: the mapping failed on this event: {exc}"
    message_id = (connector.message_id(wire) if wire else "") or event["event_id"]
    delivery = NewDelivery(
        integration_id=integration.pk,
        item_kind=Delivery.ItemKind.USAGE_EVENT,
        item_id=str(event["id"]),
        action=subscription.action,
        message_id=str(message_id)[:100],
        message=orjson.dumps(wire if wire else message).decode(),
        id=delivery_id_for(integration.pk, f"{subscription.pk}/{event['id']}"),
    )
    if error:
        delivery.status, delivery.last_error = Delivery.Status.FAILED, error
    return delivery


def usage_events_forward(*, limit: int = 100, send: bool = True) -> FanoutResult:
    """Fan out the oldest `limit` forward batches: a delivery per subscription whose trigger an
    event matches, its message rendered and stored now; the batches are deleted in the same
    transaction. Returns {integration id: new deliveries} (see `deliveries_create` for `send`)."""
    with transaction.atomic():
        batches = list(
            ForwardBatch.objects.select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "app_id", "event_ids")[:limit]
        )
        if not batches:
            return FanoutResult()
        now = timezone.now()
        subscriptions = _subscriptions({app_id for _, app_id, _ in batches})
        event_ids = [pk for _, app_id, ids in batches if subscriptions.get(app_id) for pk in ids]
        groups: dict[int, tuple[Integration, list[NewDelivery]]] = {}
        for event in UsageEvent.objects.filter(pk__in=event_ids).order_by("id").values(*_EVENT_FIELDS):
            for subscription, compiled in subscriptions[event["app_id"]]:
                delivery = _delivery(subscription, compiled, event)
                if delivery is not None:
                    groups.setdefault(subscription.integration_id, (subscription.integration, []))[1].append(
                        delivery
                    )
        result = deliveries_create(groups, now=now, send=send) if groups else FanoutResult()
        ForwardBatch.objects.filter(pk__in=[pk for pk, _, _ in batches]).delete()
        result.batches = len(batches)
    return result


def app_forwarding_refresh(*, app_ids: set[int] | None = None) -> None:
    """Set each app's `forward_usage_events` from whether an enabled destination of it has an
    enabled usage-event subscription (after any change to integrations or subscriptions)."""
    apps = App.objects.all() if app_ids is None else App.objects.filter(pk__in=app_ids)
    wanted = set(
        Subscription.objects.filter(
            enabled=True, item_kind=Subscription.ItemKind.USAGE_EVENT, integration__enabled=True
        ).values_list("integration__apps", flat=True)
    )
    wanted.discard(None)
    apps.filter(pk__in=wanted, forward_usage_events=False).update(forward_usage_events=True)
    apps.exclude(pk__in=wanted).filter(forward_usage_events=True).update(forward_usage_events=False)
