"""Write paths of an app's plans, its price list: the values checked, create, change, archive, find
by id or name, and hub_apply's `plans` section. Subscribing a customer to a plan is the lifecycle's
(`lifecycle.py`); a plan's own changes record no activity."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from ..errors import HubError, NotFound
from ..models import App, Plan


def plan_values_check(*, name: object, amount: object, currency: object, interval: object) -> dict[str, Any]:
    """A plan's fields as received (any JSON value), checked and normalised, or HubError naming the
    first wrong one."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise HubError("A plan needs a name of at most 100 characters.")
    try:
        amount = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        raise HubError("A plan's price must be a number.") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e10"):
        raise HubError("A plan's price must be zero or more.")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise HubError("A plan's currency is a three-letter code.")
    if interval not in Plan.Interval.values:
        raise HubError(f"A plan's interval is one of {', '.join(Plan.Interval.values)}.")
    return {
        "name": name,
        "amount": amount.quantize(Decimal("0.01")),
        "currency": currency.upper(),
        "interval": interval,
    }


def plan_upsert(
    *,
    app: App,
    name: object,
    amount: object,
    currency: object = "USD",
    interval: object = Plan.Interval.EVERY_30_DAYS,
) -> tuple[Plan, bool]:
    """Create or update the app's plan named `name`; return it and whether it was created."""
    values = plan_values_check(name=name, amount=amount, currency=currency, interval=interval)
    name = values.pop("name")
    plan, created = Plan.objects.update_or_create(app=app, name=name, defaults=values)
    return plan, created


def plan_save(
    *, app: App, plan: Plan | None = None, name: object, amount: object, currency: object, interval: object
) -> Plan:
    """Create a plan of `app`, or change `plan` (its name too); a name another plan has is refused.

    Existing subscriptions keep their plan row, so a new price applies to them from now on, as it
    does to new ones; activities already recorded keep the plan as it was.
    """
    values = plan_values_check(name=name, amount=amount, currency=currency, interval=interval)
    taken = Plan.objects.filter(app=app, name=values["name"])
    if plan is not None:
        taken = taken.exclude(pk=plan.pk)
    if taken.exists():
        raise HubError(f"The app already has a plan named “{values['name']}”.")
    if plan is None:
        return Plan.objects.create(app=app, **values)
    for field, value in values.items():
        setattr(plan, field, value)
    plan.save(update_fields=[*values, "updated_at"])
    return plan


def plan_archive(*, plan: Plan, archived: bool = True) -> Plan:
    """Archive `plan` (no new subscriptions; the ones it has keep running) or restore it."""
    plan.archived_at = timezone.now() if archived else None
    plan.save(update_fields=["archived_at", "updated_at"])
    return plan


def plan_get(*, app: App, reference: object) -> Plan:
    """The app's plan by public id or name, or NotFound."""
    if not isinstance(reference, str) or not reference.strip():
        raise HubError("planId is required.")
    reference = reference.strip()
    plans = Plan.objects.filter(app=app)
    try:
        plan = plans.filter(public_id=uuid.UUID(reference)).first()
    except ValueError:
        plan = plans.filter(name=reference).first()
    if plan is None:
        raise NotFound("No such plan.")
    return plan


def plans_apply(*, app: App, value: object, path: str) -> list[dict[str, Any]]:
    """hub_apply's `plans` section of an app: `[{"name", "price", "currency", "interval"}]`, matched
    by name; what a plan's entry omits keeps its value (a new plan: price 0, USD, every 30 days)."""
    from ..config_apply import ConfigError, declared_value, section_entries

    out = []
    keys = ("name", "price", "currency", "interval")
    for where, spec in section_entries(value, path=path, what="plan", keys=keys):
        name = spec.get("name")
        existing = Plan.objects.filter(app=app, name=name.strip()).first() if isinstance(name, str) else None
        try:
            plan, created = plan_upsert(
                app=app,
                name=name,
                amount=declared_value(spec, "price", obj=existing, attr="amount", default=0, path=where),
                currency=declared_value(spec, "currency", obj=existing, default="USD", path=where),
                interval=declared_value(
                    spec, "interval", obj=existing, default=Plan.Interval.EVERY_30_DAYS, path=where
                ),
            )
        except HubError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out.append(
            {"name": plan.name, "id": str(plan.public_id), "price": float(plan.amount), "created": created}
        )
    return out
