"""What a mapping does with its values: one class per action behind a small interface, by kind.

`prepare` is pure (no database): it checks the mapped values and returns the record the action
would write, or the errors; the Send test event dry run shows exactly that. `execute` writes the
prepared records of many messages through the hub's and events' own services.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import transaction

from events.services import EventError, EventInput, InvalidEvents, usage_event_validate, usage_events_store
from hub.errors import HubError
from hub.models import App
from hub.services.customer_refs import customers_resolve
from hub.services.customers import contact_upsert, customer_identify
from hub.timestamps import parse_timestamp


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    required: bool = False
    help: str = ""


@dataclass
class Prepared:
    """A record ready to write (`record` is what the screens show), or the errors."""

    record: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    data: Any = None  # what `execute` needs (e.g. the validated EventInput)


@dataclass(frozen=True)
class Written:
    outcome: str  # "stored", "duplicate" or "failed"
    error: str = ""


_STORED = Written("stored")
_DUPLICATE = Written("duplicate")


class Action(Protocol):
    kind: str
    label: str
    targets: tuple[Target, ...]

    def prepare(self, values: dict[str, Any], *, message: Any, now: datetime) -> Prepared:
        """Check mapped values; the record the action would write, or errors."""

    def execute(self, *, app: App, items: list[Prepared]) -> list[Written]:
        """Write the prepared records (inside the caller's transaction), one result each."""

    def in_message(self, prepared: Prepared, *, mapping_key: str, seen: set[str]) -> tuple[Prepared, dict]:
        """The record as it is written when other mappings of this action matched the same message
        (`seen` is this action's state for the message, which the hook updates), and what the
        message's result shows of it."""


class _Independent:
    """An action whose records do not depend on the others made from the same message."""

    def in_message(self, prepared: Prepared, *, mapping_key: str, seen: set[str]) -> tuple[Prepared, dict]:
        return prepared, {}


_REGISTRY: dict[str, Action] = {}


def action_register(action: Action) -> Action:
    _REGISTRY[action.kind] = action
    return action


def action_for(kind: str) -> Action:
    """The action of a kind (KeyError for an unknown one)."""
    return _REGISTRY[kind]


def actions_all() -> list[Action]:
    return list(_REGISTRY.values())


def _text(value: Any, name: str, errors: list[str], *, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.append(f"{name} must be text (got {type(value).__name__})")
        return None
    text = str(value).strip()
    if len(text) > max_length:
        errors.append(f"{name} has at most {max_length} characters")
        return None
    return text or None


def _hub_error_text(exc: Exception) -> str:
    if isinstance(exc, InvalidEvents):
        return "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in exc.errors)
    return str(exc)


class UsageEventAction:
    kind = "usage_event"
    label = "Record usage event"
    targets: tuple[Target, ...] = (
        Target("event_name", "Event Name", required=True, help="e.g. $.event"),
        Target("customer_id", "Customer ID", required=True, help="platform id, domain, hub id or token"),
        Target("event_id", "Event ID", help="the dedupe key; default the messageId"),
        Target("timestamp", "Timestamp", help="default the message's timestamp"),
        Target("properties", "Properties", help="an object"),
    )

    def prepare(self, values: dict[str, Any], *, message: Any, now: datetime) -> Prepared:
        raw = {
            "eventName": values.get("event_name"),
            "customerId": values.get("customer_id"),
            "eventId": values.get(
                "event_id", message.get("messageId") if isinstance(message, dict) else None
            ),
            "timestamp": values.get(
                "timestamp", message.get("timestamp") if isinstance(message, dict) else None
            ),
            "properties": values.get("properties"),
        }
        errors: list[EventError] = []
        try:
            event = usage_event_validate(raw, index=0, now=now, need_customer=True, errors=errors)
        except HubError as exc:
            return Prepared(errors=[_hub_error_text(exc)])
        if event is None:
            return Prepared(errors=[_hub_error_text(InvalidEvents(errors))])
        record = {
            "event_name": event.event_name,
            "event_id": event.event_id,
            "customer_id": event.customer_ref,
            "timestamp": event.timestamp.isoformat(),
            "properties": raw["properties"] if isinstance(raw["properties"], dict) else {},
        }
        return Prepared(record=record, data=event)

    def in_message(self, prepared: Prepared, *, mapping_key: str, seen: set[str]) -> tuple[Prepared, dict]:
        """Two usage-event mappings matching one message make two events: the later gets a suffix."""
        event_id = prepared.record["event_id"]
        if event_id in seen:
            event_id = f"{event_id}:{mapping_key}"[:255]
            prepared = Prepared(
                record={**prepared.record, "event_id": event_id},
                data=dataclasses.replace(prepared.data, event_id=event_id),
            )
        seen.add(event_id)
        return prepared, {"event_id": event_id}

    def execute(self, *, app: App, items: list[Prepared]) -> list[Written]:
        events: list[EventInput] = [item.data for item in items]
        try:
            # No savepoint of its own: the store's refusals (an unknown customer token) come before
            # it writes, and a batch's writes are atomic in the store.
            stored = usage_events_store(app=app, events=events).stored_ids
        except HubError as exc:
            if len(items) == 1:
                # Refused (an unknown customer token): that message failed, and only that one.
                return [Written("failed", _hub_error_text(exc))]
            # One bad reference must not fail the others: store each on its own.
            return [self.execute(app=app, items=[item])[0] for item in items]
        # The first message of a stored id stored it; any other was a duplicate.
        seen: set[str] = set()
        out = []
        for e in events:
            out.append(_STORED if e.event_id in stored and e.event_id not in seen else _DUPLICATE)
            seen.add(e.event_id)
        return out


_CUSTOMER_TEXT = ("platform", "platform_id", "myshopify_domain", "name", "email", "platform_plan_name")


class CustomerAction(_Independent):
    kind = "customer"
    label = "Upsert customer"
    targets: tuple[Target, ...] = (
        Target("platform_id", "Platform ID", help="e.g. $.groupId; or the myshopify domain"),
        Target("myshopify_domain", "myshopify domain"),
        Target("name", "Name"),
        Target("email", "Email"),
        Target("platform_plan_name", "Plan name"),
        Target("platform", "Platform", help="default shopify"),
        Target("custom_fields", "Custom fields", help="an object, merged"),
        Target("tags", "Tags", help="a list of text"),
        Target("created_at", "Created at"),
    )

    def prepare(self, values: dict[str, Any], *, message: Any, now: datetime) -> Prepared:
        errors: list[str] = []
        record: dict[str, Any] = {}
        for name in _CUSTOMER_TEXT:
            value = _text(values.get(name), name, errors, max_length=50 if name == "platform" else 255)
            if value is not None:
                record[name] = value
        if not record.get("platform_id") and not record.get("myshopify_domain"):
            errors.append("platform_id or myshopify_domain is required (no value was mapped)")
        custom = values.get("custom_fields")
        if custom is not None:
            if isinstance(custom, dict):
                record["custom_fields"] = custom
            else:
                errors.append("custom_fields must be an object")
        tags = values.get("tags")
        if tags is not None:
            if isinstance(tags, str):
                tags = [t.strip() for t in tags.split(",") if t.strip()]
            if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
                record["tags"] = tags
            else:
                errors.append("tags must be a list of text")
        if values.get("created_at") is not None:
            try:
                record["created_at"] = parse_timestamp(values["created_at"], now=now).isoformat()
            except ValueError as exc:
                errors.append(f"created_at {exc}")
        return Prepared(record=record, errors=errors)

    def execute(self, *, app: App, items: list[Prepared]) -> list[Written]:
        out = []
        for item in items:
            kwargs = dict(item.record)
            if "created_at" in kwargs:
                kwargs["created_at"] = parse_timestamp(kwargs["created_at"], now=datetime.now().astimezone())
            try:
                with transaction.atomic():
                    customer_identify(app=app, **kwargs)
            except HubError as exc:
                out.append(Written("failed", str(exc)))
            else:
                out.append(Written("stored"))
        return out


class ContactAction(_Independent):
    kind = "contact"
    label = "Upsert contact"
    targets: tuple[Target, ...] = (
        Target("customer_id", "Customer ID", required=True, help="e.g. $.traits.company.id"),
        Target("email", "Email", required=True, help="e.g. $.traits.email"),
        Target("name", "Name"),
        Target("phone", "Phone"),
        Target("label", "Label", help="e.g. the title"),
    )

    def prepare(self, values: dict[str, Any], *, message: Any, now: datetime) -> Prepared:
        errors: list[str] = []
        record: dict[str, Any] = {}
        for name, limit in (
            ("customer_id", 255),
            ("email", 255),
            ("name", 255),
            ("phone", 64),
            ("label", 100),
        ):
            value = _text(values.get(name), name, errors, max_length=limit)
            if value is not None:
                record[name] = value
        for name in ("customer_id", "email"):
            if name not in record and not any(e.startswith(name) for e in errors):
                errors.append(f"{name} is required (no value was mapped)")
        if "email" in record and "@" not in record["email"]:
            errors.append("email must be an email address")
        return Prepared(record=record, errors=errors)

    def execute(self, *, app: App, items: list[Prepared]) -> list[Written]:
        out = []
        for item in items:
            fields = dict(item.record)
            reference = fields.pop("customer_id")
            try:
                with transaction.atomic():
                    customer = customers_resolve(app=app, references=[reference])[reference]
                    contact_upsert(customer=customer, **fields)
            except HubError as exc:
                out.append(Written("failed", str(exc)))
            else:
                out.append(Written("stored"))
        return out


# Registration order is execution order within a batch: customers first, so a group's customer
# exists before an identify's contact or a track's usage event names it.
action_register(CustomerAction())
action_register(ContactAction())
action_register(UsageEventAction())
