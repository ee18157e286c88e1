"""Usage events, customers and contacts to destinations. The layers below leave rows: the
events layer a `ForwardBatch` of the ids it stored (for apps whose destinations subscribe to
usage events), the core a `CustomerForward` snapshot of each customer or contact change (for apps
whose destinations subscribe to those). This module turns them into deliveries on the delivery
engine and deletes them in the same transaction, so each item is fanned out once and a lost task
only delays it (the sweep forwards what is left).

An item is offered to its app's subscriptions in the shape of a Segment call, so that the default
mappings are Segment's own action code's and a mapping written for Segment reads the same paths:
a usage event as a track call,

    {"type": "track", "event": <name>, "messageId": <event id>, "timestamp": <ISO-8601>,
     "userId": <customer id>, "properties": {...}, "context": {"groupId": <customer id>},
     "customer": {"id", "platformId", "myshopifyDomain", "name", "customFields"}}

a customer as a group call and a contact as an identify call (`customer_message`,
`contact_message`; docs/destinations.md). Each (subscription, item) makes one delivery whose
message is rendered now, through the subscription's trigger and mapping, and stored; a message the
destination cannot take (a required field missing after the mapping) is stored as a failed
delivery saying why, never sent.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from events.models import ForwardBatch, UsageEvent
from hub.models import App, CustomerForward
from hub.raw_cursor import raw_cursor

from .connectors import MessageRefused, connector_for
from .delivery_fanout import FanoutResult, deliveries_create
from .delivery_rows import NewDelivery, delivery_id_for, iso_ms
from .models import Delivery, Integration, Subscription
from .sources.mapping_engine import (
    CompiledMapping,
    MappingError,
    MappingFailed,
    mapping_compile,
    mapping_values,
)
from .sources.triggers import TriggerError


def event_message(event: dict[str, Any]) -> dict[str, Any]:
    """A stored usage event (a row of EVENT_FIELDS) as the track call mappings read."""
    customer_id = str(event["customer__public_id"])
    timestamp = event["timestamp"]
    return {
        "type": "track",
        "event": event["event_name"],
        "messageId": event["event_id"],
        "timestamp": timestamp if isinstance(timestamp, str) else iso_ms(timestamp),
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


def subscriptions_of_apps(
    app_ids: set[int], item_kinds: tuple[str, ...] = (Subscription.ItemKind.USAGE_EVENT,)
) -> dict[int, list[tuple[Subscription, CompiledMapping | None]]]:
    """{app id: [(enabled subscription to these item kinds of an enabled destination of it, compiled)]}."""
    by_app: dict[int, list[tuple[Subscription, CompiledMapping | None]]] = defaultdict(list)
    apps_of: dict[int, list[int]] = defaultdict(list)
    links = Integration.apps.through.objects.filter(app_id__in=app_ids, integration__enabled=True)
    for integration_id, app_id in links.values_list("integration_id", "app_id"):
        apps_of[integration_id].append(app_id)
    subscriptions = Subscription.objects.filter(
        integration_id__in=set(apps_of), enabled=True, item_kind__in=item_kinds
    ).select_related("integration")
    for subscription in subscriptions:
        try:
            compiled: CompiledMapping | None = subscription_compile(subscription)
        except (TriggerError, MappingError, KeyError):
            compiled = None  # saved through the services, so only a connector that lost the action
        for app_id in apps_of[subscription.integration_id]:
            by_app[app_id].append((subscription, compiled))
    return by_app


EVENT_FIELDS = (
    "id", "app_id", "event_id", "event_name", "timestamp", "properties", "customer__public_id",
    "customer__platform_id", "customer__myshopify_domain", "customer__name", "customer__custom_fields",
)  # fmt: skip

# The forwarder's events in one statement with an id array: an ORM `pk__in` list of a chunk's ids
# costs more in Python (a parameter per id) than rendering them. The timestamp comes formatted as
# `iso_ms` formats it; JSON comes as text for orjson (a document orjson cannot read, such as an
# integer past 64 bits, goes through the standard library as Django's JSONField does).
_EVENTS_SQL = (
    "SELECT e.id, e.app_id, e.event_id, e.event_name, "
    """to_char(e.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), e.properties::text, """
    "c.public_id::text, c.platform_id, c.myshopify_domain, c.name, c.custom_fields::text "
    "FROM unnest(%b::bigint[]) AS o(id) "
    "CROSS JOIN LATERAL (SELECT * FROM events_usageevent WHERE id = o.id OFFSET 0) e "
    "CROSS JOIN LATERAL (SELECT * FROM hub_customer WHERE id = e.customer_id OFFSET 0) c "
    "ORDER BY e.id"
)
# Each id looked up by primary key (LATERAL, kept from being pulled up by OFFSET 0), in its own
# partition (pruned at run time), and each event's customer likewise: with `e.id = ANY(...)` and a
# join, a partition or customers' table the statistics thought small was read whole (165,000 rows
# for a chunk of 1,000 events, 20 ms, against 4 ms).


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def events_load(event_ids: list[int]) -> list[dict[str, Any]]:
    """The stored usage events of these ids as rows of EVENT_FIELDS, in id order."""
    if connection.vendor != "postgresql":
        return list(UsageEvent.objects.filter(pk__in=event_ids).order_by("id").values(*EVENT_FIELDS))
    with raw_cursor() as cursor:
        cursor.execute(_EVENTS_SQL, [event_ids])
        rows = cursor.fetchall()
    return [dict(zip(EVENT_FIELDS, (*r[:5], _json(r[5]), *r[6:10], _json(r[10])), strict=True)) for r in rows]


def item_delivery(
    subscription: Subscription,
    compiled: CompiledMapping | None,
    message: dict[str, Any],
    *,
    item_kind: str,
    item_id: str,
) -> NewDelivery | None:
    """The delivery of one item (its view `message`: a track, group or identify call) for one
    subscription, its wire message rendered now; None when the trigger does not match; failed
    (never sent) when the mapping leaves out what the destination needs."""
    integration = subscription.integration
    connector = connector_for(integration.kind)
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
            error = f"not sent: the mapping failed on this item: {exc}"
    message_id = (connector.message_id(wire) if wire else "") or message["messageId"]
    delivery = NewDelivery(
        integration_id=integration.pk,
        item_kind=item_kind,
        item_id=item_id,
        action=subscription.action,
        message_id=str(message_id)[:100],
        message=orjson.dumps(wire if wire else message).decode(),
        # One delivery per (subscription, item), whoever makes it: forwarding, a backfill, twice.
        id=delivery_id_for(integration.pk, f"{subscription.pk}/{item_kind}/{item_id}"),
    )
    if error:
        delivery.status, delivery.last_error = Delivery.Status.FAILED, error
    return delivery


def event_delivery(
    subscription: Subscription, compiled: CompiledMapping | None, event: dict
) -> NewDelivery | None:
    """`item_delivery` of one stored usage event (a row of EVENT_FIELDS)."""
    return item_delivery(
        subscription,
        compiled,
        event_message(event),
        item_kind=Delivery.ItemKind.USAGE_EVENT,
        item_id=str(event["id"]),
    )


# Events per forward batch lately (per process): how many batches make a chunk of about
# `max_events`, whether requests store one event or a thousand.
_events_per_batch = [100.0]


def usage_events_forward(*, max_events: int = 2000, send: bool = True) -> FanoutResult:
    """Fan out the oldest forward batches (about `max_events` events): a delivery per
    subscription whose trigger an event matches, its message rendered and stored now; the batches
    are deleted in the same transaction. Returns {integration id: new deliveries} (see
    `deliveries_create` for `send`); its `batches` says how many were taken, `more` whether the
    chunk was full."""
    limit = max(1, min(500, int(max_events / max(1.0, _events_per_batch[0]))))
    with transaction.atomic():
        batches = list(
            ForwardBatch.objects.select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "app_id", "event_ids")[:limit]
        )
        if not batches:
            return FanoutResult()
        _events_per_batch[0] = sum(len(ids) for _, _, ids in batches) / len(batches)
        now = timezone.now()
        subscriptions = subscriptions_of_apps({app_id for _, app_id, _ in batches})
        event_ids = [pk for _, app_id, ids in batches if subscriptions.get(app_id) for pk in ids]
        groups: dict[int, tuple[Integration, list[NewDelivery]]] = {}
        for event in events_load(event_ids):
            for subscription, compiled in subscriptions[event["app_id"]]:
                delivery = event_delivery(subscription, compiled, event)
                if delivery is not None:
                    groups.setdefault(subscription.integration_id, (subscription.integration, []))[1].append(
                        delivery
                    )
        result = deliveries_create(groups, now=now, send=send) if groups else FanoutResult()
        ForwardBatch.objects.filter(pk__in=[pk for pk, _, _ in batches]).delete()
        result.batches = len(batches)
        result.more = len(batches) >= limit
    return result


def _traits(snapshot: dict[str, Any]) -> dict[str, Any]:
    traits = {
        "name": snapshot.get("name") or None,
        "email": snapshot.get("email") or None,
        "plan": snapshot.get("platform_plan_name") or None,
        "platformPlanName": snapshot.get("platform_plan_name") or None,
        "platform": snapshot.get("platform"),
        "platformId": snapshot.get("platform_id"),
        "myshopifyDomain": snapshot.get("myshopify_domain"),
        "createdAt": snapshot.get("created_at"),
        "customFields": snapshot.get("custom_fields") or {},
        "tags": snapshot.get("tags") or [],
    }
    return {k: v for k, v in traits.items() if v is not None}


def customer_message(row: CustomerForward) -> dict[str, Any]:
    """A customer change as the group call mappings read (the shop is the account)."""
    snapshot = row.snapshot
    return {
        "type": "group",
        "messageId": f"customer-{row.pk}",
        "timestamp": iso_ms(row.created_at),
        "sentAt": iso_ms(row.created_at),
        "userId": snapshot["id"],
        "groupId": snapshot["id"],
        "traits": _traits(snapshot),
    }


def contact_message(row: CustomerForward) -> dict[str, Any]:
    """A contact change as the identify call mappings read (the contact is the user, its
    customer the company)."""
    snapshot = row.snapshot
    customer = snapshot["customer"]
    name = snapshot.get("name") or ""
    first, _, last = name.partition(" ")
    traits = {
        "email": snapshot["email"],
        "name": name or None,
        "first_name": first or None,
        "last_name": last or None,
        "phone": snapshot.get("phone") or None,
        "title": snapshot.get("label") or None,
        "label": snapshot.get("label") or None,
        "company": {"id": customer["id"], "name": customer.get("name") or None},
        # Mantle's identify reads the customer's fields and one contact from the traits.
        **{k: v for k, v in _traits(customer).items() if k != "email" and k != "name"},
        "customerName": customer.get("name") or None,
        "customerEmail": customer.get("email") or None,
        "contact_email": snapshot["email"],
        "contact_name": name or None,
        "contact_phone": snapshot.get("phone") or None,
        "contact_role": snapshot.get("label") or None,
    }
    return {
        "type": "identify",
        "messageId": f"contact-{row.pk}",
        "timestamp": iso_ms(row.created_at),
        "sentAt": iso_ms(row.created_at),
        "userId": snapshot["email"],
        "traits": {k: v for k, v in traits.items() if v is not None},
        "context": {"groupId": customer["id"]},
    }


def customers_forward(*, limit: int = 500, send: bool = True) -> FanoutResult:
    """Fan out the oldest `limit` customer and contact changes to the subscriptions of their kind
    (each rendered now from the snapshot of the change, as usage events are); the rows are deleted
    in the same transaction."""
    with transaction.atomic():
        rows = list(CustomerForward.objects.select_for_update(skip_locked=True).order_by("id")[:limit])
        if not rows:
            return FanoutResult()
        now = timezone.now()
        kinds = (Subscription.ItemKind.CUSTOMER, Subscription.ItemKind.CONTACT)
        subscriptions = subscriptions_of_apps({r.app_id for r in rows}, kinds)
        groups: dict[int, tuple[Integration, list[NewDelivery]]] = {}
        for row in rows:
            message = (
                customer_message(row) if row.kind == CustomerForward.Kind.CUSTOMER else contact_message(row)
            )
            for subscription, compiled in subscriptions.get(row.app_id, ()):
                if subscription.item_kind != row.kind:
                    continue
                delivery = item_delivery(
                    subscription, compiled, message, item_kind=row.kind, item_id=str(row.pk)
                )
                if delivery is not None:
                    groups.setdefault(subscription.integration_id, (subscription.integration, []))[1].append(
                        delivery
                    )
        result = deliveries_create(groups, now=now, send=send) if groups else FanoutResult()
        CustomerForward.objects.filter(pk__in=[r.pk for r in rows]).delete()
        result.batches = len(rows)
        result.more = len(rows) >= limit
    return result


def app_forwarding_refresh(*, app_ids: set[int] | None = None) -> None:
    """Set each app's `forward_usage_events` and `forward_customers` from whether an enabled
    destination of it has an enabled subscription of that kind (after any change to integrations
    or subscriptions)."""
    apps = App.objects.all() if app_ids is None else App.objects.filter(pk__in=app_ids)
    for flag, kinds in (
        ("forward_usage_events", [Subscription.ItemKind.USAGE_EVENT]),
        ("forward_customers", [Subscription.ItemKind.CUSTOMER, Subscription.ItemKind.CONTACT]),
    ):
        wanted = set(
            Subscription.objects.filter(
                enabled=True, item_kind__in=kinds, integration__enabled=True
            ).values_list("integration__apps", flat=True)
        )
        wanted.discard(None)
        apps.filter(pk__in=wanted, **{flag: False}).update(**{flag: True})
        apps.exclude(pk__in=wanted).filter(**{flag: True}).update(**{flag: False})
