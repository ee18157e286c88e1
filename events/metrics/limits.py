"""Billing signals: plans' usage limits per metric, and the activities recorded when one is crossed.

A plan limits a metric per billing period and names thresholds in percent (80 and 100 by default).
When a customer's value for the current period reaches a threshold, an Activity is recorded once
per customer, metric, threshold and period: "usage limit approaching" below 100 %, "usage limit
reached" from 100 %, and with it "upgrade suggested" when a dearer plan of the app allows more.
The check runs in the rollup worker's transaction, at its end, and a unique `UsageSignal` row
makes a second recording impossible. Several drains of one app count at once; their checks take
turns (a lock of the app's checks, held until the drain commits), so the last of two drains that
commit together reads the other's counts too: a threshold crossed by their sum is never missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from hub.errors import HubError, NotFound
from hub.models import Activity, Customer, Plan, Subscription
from hub.services.lifecycle import activity_record

from ..models import Metric, PlanUsageLimit, UsageSignal
from .periods import billing_period
from .selectors import as_number, metric_value

DEFAULT_THRESHOLDS = (80, 100)
# The advisory-lock class of "a drain checks this app's usage limits" (transaction-scoped).
LIMITS_LOCK = 7313


def _limits_checks_serialize(app_pk: int) -> None:
    """Wait for the app's other limit checks to commit, so that this one reads their counts."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LIMITS_LOCK, app_pk])


def plan_usage_limit_set(*, plan: Plan, metric: Metric, limit: object,
                         thresholds: object = DEFAULT_THRESHOLDS) -> PlanUsageLimit:  # fmt: skip
    """Create or change `plan`'s limit of `metric` per billing period, with its thresholds (percent).

    `limit` and `thresholds` are checked here (they come from forms and documents as they are).
    """
    if plan.app_id != metric.app_id:
        raise NotFound("No such metric for this plan's app.")
    try:
        value = Decimal(str(limit))
    except (InvalidOperation, ValueError):
        raise HubError("limit must be a number.") from None
    if isinstance(limit, bool) or not value.is_finite() or value <= 0 or value >= Decimal("1e15"):
        raise HubError("limit must be a number greater than zero.")
    if not isinstance(thresholds, list | tuple) or not thresholds or len(thresholds) > 10:
        raise HubError("thresholds must be a list of 1 to 10 percentages.")
    if any(isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= 1000 for t in thresholds):
        raise HubError("each threshold is a whole percentage from 1 to 1000.")
    usage_limit, _ = PlanUsageLimit.objects.update_or_create(
        plan=plan, metric=metric, defaults={"limit": value, "thresholds": sorted(set(thresholds))}
    )
    return usage_limit


def plan_usage_limit_remove(*, plan: Plan, metric: Metric) -> None:
    """Remove `plan`'s limit of `metric` (nothing to do when it has none)."""
    PlanUsageLimit.objects.filter(plan=plan, metric=metric).delete()


def usage_signals_customer_merge(*, keep: Customer, remove: Customer) -> None:
    """A placeholder has no subscription, hence no signals: drop any rather than collide.

    Registered with the core's customer merge (`EventsConfig.ready()`).
    """
    UsageSignal.objects.filter(customer=remove).delete()


def _suggested_plan(*, current: Plan, metric: Metric, value: Decimal) -> Plan | None:
    """The cheapest dearer plan of the app whose limit of `metric` is above `value` (or unlimited)."""
    dearer = Plan.objects.filter(app_id=current.app_id, amount__gt=current.amount).order_by("amount", "name")
    limits = dict(
        PlanUsageLimit.objects.filter(plan__in=dearer, metric=metric).values_list("plan_id", "limit")
    )
    for plan in dearer:
        limit = limits.get(plan.pk)
        if limit is None or limit > value:
            return plan
    return None


def usage_limits_check(*, app_pk: int, touched: Iterable[tuple[int, int]]) -> list[Activity]:
    """Record the signals the customers' new usage crossed; `touched` is (customer pk, metric pk)."""
    touched = set(touched)
    customer_pks = {c for c, _ in touched}
    metric_pks = {m for _, m in touched}
    subscriptions = {
        s.customer_id: s
        for s in Subscription.objects.select_related("plan", "customer", "customer__app").filter(
            app_id=app_pk, customer_id__in=customer_pks, status=Subscription.Status.ACTIVE
        )
    }
    if not subscriptions:
        return []
    limits = PlanUsageLimit.objects.select_related("metric").filter(
        plan_id__in={s.plan_id for s in subscriptions.values()}, metric_id__in=metric_pks
    )
    by_plan: dict[int, list[PlanUsageLimit]] = {}
    for usage_limit in limits:
        by_plan.setdefault(usage_limit.plan_id, []).append(usage_limit)
    if not by_plan:
        return []
    _limits_checks_serialize(app_pk)
    now = timezone.now()
    recorded: list[Activity] = []
    for customer_pk, subscription in sorted(subscriptions.items()):
        for usage_limit in by_plan.get(subscription.plan_id, ()):
            if (customer_pk, usage_limit.metric_id) not in touched:
                continue
            recorded += _check_one(subscription, usage_limit, now)
    return recorded


def _check_one(subscription: Subscription, usage_limit: PlanUsageLimit, now: datetime) -> list[Activity]:
    customer, metric = subscription.customer, usage_limit.metric
    period = billing_period(customer=customer, now=now, subscription=subscription)
    value = metric_value(metric=metric, customer=customer, start=period.start, end=period.end)
    if value is None:
        return []
    value = Decimal(value)
    out = []
    for threshold in sorted(usage_limit.thresholds):
        if value < usage_limit.limit * threshold / 100:
            break
        try:
            with transaction.atomic():
                UsageSignal.objects.create(
                    customer=customer, metric=metric, threshold=threshold, period_start=period.start,
                    value=value, limit=usage_limit.limit,
                )  # fmt: skip
        except IntegrityError:
            continue  # recorded already for this period
        properties = {
            "metric": metric.name,
            "metric_id": str(metric.public_id),
            "event_name": metric.event_name,
            "value": as_number(value),
            "limit": as_number(usage_limit.limit),
            "threshold_percent": threshold,
            "plan": subscription.plan.name,
            "plan_id": str(subscription.plan.public_id),
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
        }
        kind = (
            Activity.Kind.USAGE_LIMIT_REACHED if threshold >= 100 else Activity.Kind.USAGE_LIMIT_APPROACHING
        )
        out.append(activity_record(customer=customer, kind=kind, properties=properties))
        if threshold >= 100:
            suggested = _suggested_plan(current=subscription.plan, metric=metric, value=value)
            if suggested is not None:
                out.append(
                    activity_record(
                        customer=customer,
                        kind=Activity.Kind.UPGRADE_SUGGESTED,
                        properties={
                            **properties,
                            "suggested_plan": suggested.name,
                            "suggested_plan_id": str(suggested.public_id),
                            "suggested_price": float(suggested.amount),
                        },
                    )
                )
    return out
