"""Write paths of the customer lifecycle: installations, subscriptions and reviews (the plans they
refer to are in `plans.py`).

Every change goes through one service here and records an `Activity` in the same transaction
(the outbox). After commit, the named task `integrations.activities_fanout` is enqueued to send
it out; if the broker is down the integrations' periodic sweep finds the activity anyway, so
the core never imports the integrations package and nothing depends on Redis keeping a message.
Illegal transitions raise `Conflict` (409).
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..errors import Conflict, HubError, NotFound
from ..models import Activity, Customer, Installation, Plan, Review, Subscription
from ..races import unique_race_safe
from ..raw_cursor import RowsInsert
from ..task_coalescing import CoalescedTask

FANOUT_TASK = "integrations.activities_fanout"


# Committed activities are handed to the fan-out 40 ms after the first one of a window: at hundreds
# of commits a second the broker sees tens of fan-out tasks, not hundreds. A fan-out task costs
# the workers some milliseconds of CPU whatever it carries (the task, a transaction, a request),
# so the window sets the CPU per activity at moderate rates: 40 ms rather than 20 ms makes about
# 40 % fewer tasks at 200/s, for some 20 ms more commit-to-received (docs/segment.md). A process
# recording 400/s or more (16 in a window) waits 100 ms instead: at 2,000/s over four processes,
# 40 tasks a second rather than 100, the tasks' CPU a quarter of the machine otherwise
# (bench.segment_delivery). A task carries at most 1,000 ids (a backlog's fan-out claims 5,000);
# if the broker is down, the integrations' periodic sweep dispatches the activities anyway.
# A window of more than 2,500 activities (an import, or a transaction that recorded thousands) is
# a backlog, sent as soon as it has that many: one task without ids that starts
# HUB_DELIVERY_PARALLEL - 1 more, which all claim the oldest activities chunk by chunk and go on
# while their chunks are full, as the sweep's would; ids would make many small claims by id (about
# 20 % more CPU a delivery in bench.segment_delivery) and leave the split over the workers to the
# broker.
fanout_soon: CoalescedTask[str] = CoalescedTask(
    FANOUT_TASK, seconds=0.04, chunk=1000, busy_items=16, busy_seconds=0.1,
    backlog_above=2500, backlog_args=lambda: [None, settings.HUB_DELIVERY_PARALLEL],
)  # fmt: skip


def _customer_properties(customer: Customer) -> dict[str, Any]:
    return {
        "customer_id": str(customer.public_id),
        "platform": customer.platform,
        "platform_id": customer.platform_id,
        "myshopify_domain": customer.myshopify_domain,
        "customer_name": customer.name or None,
    }


def _plan_properties(plan: Plan, prefix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}plan": plan.name,
        f"{prefix}plan_id": str(plan.public_id),
        f"{prefix}price": float(plan.amount),
        f"{prefix}currency": plan.currency,
        f"{prefix}interval": plan.interval,
    }


# An activity's insert as one prepared statement on PostgreSQL: the ORM's save() compiles it anew
# each time, a sizeable share of recording one (bench.segment_delivery's 2,000/s phase). The
# database queues it for the fan-out in the same statement (hub.models.ActivityOutbox).
_ACTIVITY_INSERT = RowsInsert(Activity, [])
_KINDS = frozenset(Activity.Kind.values)


def activity_record(
    *, customer: Customer, kind: str, properties: dict[str, Any] | None = None, at: datetime | None = None
) -> Activity:
    """Record an activity of `customer` in the caller's transaction; enqueue its fan-out after commit."""
    activity = _activity_new(customer=customer, kind=kind, properties=properties, at=at)
    if not _ACTIVITY_INSERT.available():
        activity.save(force_insert=True)
    elif _ACTIVITY_INSERT.insert(activity, []) is None:
        raise IntegrityError(f"An activity with the id {activity.pk} exists already.")
    activity_announce(activity)
    return activity


def _activity_new(
    *, customer: Customer, kind: str, properties: dict[str, Any] | None = None, at: datetime | None = None
) -> Activity:
    if kind not in _KINDS:
        raise HubError(f"Unknown activity {kind!r}.")
    app = customer.app
    return Activity(
        app=app,
        customer=customer,
        kind=kind,
        occurred_at=at or timezone.now(),
        customer_fields=dict(customer.custom_fields or {}),
        properties={
            "app": app.name,
            "app_id": str(app.public_id),
            **_customer_properties(customer),
            **(properties or {}),
        },
    )


def activity_announce(activity: Activity) -> None:
    """Hand a stored activity to the fan-out after the caller's transaction commits."""
    # After commit only: an activity of a rolled-back transaction is never announced.
    transaction.on_commit(functools.partial(fanout_soon, str(activity.pk)))


# --- Installations ----------------------------------------------------------------------------


def _locked_installation(customer: Customer) -> Installation | None:
    return Installation.objects.select_for_update().filter(customer=customer).first()


@unique_race_safe
@transaction.atomic
def installation_install(*, customer: Customer) -> Installation:
    """Install the app for `customer` (a reinstall after an uninstall); installed twice is a conflict."""
    installation = _locked_installation(customer)
    now = timezone.now()
    if installation is None:
        installation = Installation.objects.create(app=customer.app, customer=customer, installed_at=now)
        activity_record(
            customer=customer, kind=Activity.Kind.INSTALLED, properties={"reinstall": False}, at=now
        )
        return installation
    if installation.status != Installation.Status.UNINSTALLED:
        raise Conflict(f"The app is already installed for this customer ({installation.status}).")
    installation.status = Installation.Status.INSTALLED
    installation.installed_at, installation.uninstalled_at, installation.frozen_at = now, None, None
    installation.save()
    activity_record(customer=customer, kind=Activity.Kind.INSTALLED, properties={"reinstall": True}, at=now)
    return installation


def installation_first_rows(*, customer: Customer, at: datetime) -> tuple[Installation, Activity]:
    """The installation of a customer identified for the first time and its `installed` activity,
    unsaved: identify writes them with the new customer in one statement (hub.services.customers),
    then announces the activity (`activity_announce`). What `installation_install` would write."""
    installation = Installation(app=customer.app, customer=customer, installed_at=at)
    activity = _activity_new(
        customer=customer, kind=Activity.Kind.INSTALLED, properties={"reinstall": False}, at=at
    )
    return installation, activity


def installation_on_identify(*, customer: Customer) -> Installation | None:
    """Identify's hook: a first identify is an install, an identify after an uninstall a reinstall."""
    installation = _locked_installation(customer)
    if installation is not None and installation.status != Installation.Status.UNINSTALLED:
        return installation
    return installation_install(customer=customer)


def _installation_or_404(customer: Customer) -> Installation:
    installation = _locked_installation(customer)
    if installation is None:
        raise Conflict("The app is not installed for this customer.")
    return installation


@transaction.atomic
def installation_uninstall(*, customer: Customer) -> Installation:
    """Uninstall; the open subscription, if any, is cancelled with it."""
    installation = _installation_or_404(customer)
    if installation.status == Installation.Status.UNINSTALLED:
        raise Conflict("The app is already uninstalled for this customer.")
    now = timezone.now()
    installation.status, installation.uninstalled_at = Installation.Status.UNINSTALLED, now
    installation.save()
    activity_record(customer=customer, kind=Activity.Kind.UNINSTALLED, at=now)
    if _open_subscription(customer) is not None:
        subscription_cancel(customer=customer, reason="uninstalled")
    return installation


@transaction.atomic
def installation_freeze(*, customer: Customer) -> Installation:
    """Deactivate (freeze) an installed app, e.g. when the shop is closed or paused."""
    installation = _installation_or_404(customer)
    if installation.status != Installation.Status.INSTALLED:
        raise Conflict(f"Only an installed app can be frozen (it is {installation.status}).")
    now = timezone.now()
    installation.status, installation.frozen_at = Installation.Status.FROZEN, now
    installation.save()
    activity_record(customer=customer, kind=Activity.Kind.INSTALLATION_FROZEN, at=now)
    return installation


@transaction.atomic
def installation_reactivate(*, customer: Customer) -> Installation:
    """Reactivate a frozen installation."""
    installation = _installation_or_404(customer)
    if installation.status != Installation.Status.FROZEN:
        raise Conflict(f"Only a frozen installation can be reactivated (it is {installation.status}).")
    now = timezone.now()
    installation.status, installation.frozen_at = Installation.Status.INSTALLED, None
    installation.save()
    activity_record(customer=customer, kind=Activity.Kind.INSTALLATION_REACTIVATED, at=now)
    return installation


# --- Reviews ----------------------------------------------------------------------------------


@transaction.atomic
def review_create(*, customer: Customer, rating: object, text: object = "") -> Review:
    """Record a review (rating 1 to 5) of a customer who has the app installed or had it."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise HubError("rating must be a whole number from 1 to 5.")
    if text is None:
        text = ""
    if not isinstance(text, str) or len(text) > 10_000:
        raise HubError("text must be a string of at most 10,000 characters.")
    if not Installation.objects.filter(customer=customer).exists():
        raise Conflict("Only a customer who installed the app can review it.")
    review = Review.objects.create(app=customer.app, customer=customer, rating=rating, text=text.strip())
    activity_record(
        customer=customer,
        kind=Activity.Kind.REVIEWED,
        properties={"rating": rating, "review": review.text},
        at=review.created_at,
    )
    return review


# --- Subscriptions ----------------------------------------------------------------------------


def _open_subscription(customer: Customer) -> Subscription | None:
    return (
        Subscription.objects.select_for_update()
        .select_related("plan")
        .filter(customer=customer, status__in=[Subscription.Status.ACTIVE, Subscription.Status.FROZEN])
        .first()
    )


def _require_installed(customer: Customer) -> None:
    installation = Installation.objects.filter(customer=customer).values_list("status", flat=True).first()
    if installation != Installation.Status.INSTALLED:
        raise Conflict("The customer needs the app installed (and not frozen) to subscribe.")


@unique_race_safe
@transaction.atomic
def subscription_subscribe(*, customer: Customer, plan: Plan) -> tuple[Subscription, str]:
    """Subscribe to `plan`, or change the open subscription to it; return it and the activity kind.

    A change to a dearer plan is an upgrade, to a cheaper one a downgrade, to an equally priced one
    a plan change (neither).
    """
    if plan.app_id != customer.app_id:
        raise NotFound("No such plan.")
    _require_installed(customer)
    current = _open_subscription(customer)
    if plan.archived_at is not None and (current is None or current.plan_id != plan.pk):
        raise Conflict(f"The plan “{plan.name}” is archived: it takes no new subscriptions.")
    if current is None:
        subscription = Subscription.objects.create(app=customer.app, customer=customer, plan=plan)
        activity_record(
            customer=customer,
            kind=Activity.Kind.SUBSCRIBED,
            properties={**_plan_properties(plan), "subscription_id": str(subscription.public_id)},
            at=subscription.activated_at,
        )
        return subscription, Activity.Kind.SUBSCRIBED
    return current, subscription_change_plan(subscription=current, plan=plan)


def subscription_change_plan(*, subscription: Subscription, plan: Plan) -> str:
    """Move a locked, open subscription to `plan`; return the activity kind (upgraded, downgraded,
    or plan_changed for an equally priced plan)."""
    if subscription.status != Subscription.Status.ACTIVE:
        raise Conflict(f"A {subscription.status} subscription cannot change plan.")
    previous = subscription.plan
    if previous.pk == plan.pk:
        raise Conflict(f"The customer is already subscribed to {plan.name}.")
    if plan.amount > previous.amount:
        kind = Activity.Kind.UPGRADED
    elif plan.amount < previous.amount:
        kind = Activity.Kind.DOWNGRADED
    else:
        kind = Activity.Kind.PLAN_CHANGED
    subscription.plan = plan
    subscription.save(update_fields=["plan", "updated_at"])
    activity_record(
        customer=subscription.customer,
        kind=kind,
        properties={
            **_plan_properties(plan),
            **_plan_properties(previous, prefix="previous_"),
            "subscription_id": str(subscription.public_id),
        },
    )
    return kind


def _open_or_conflict(customer: Customer) -> Subscription:
    subscription = _open_subscription(customer)
    if subscription is None:
        raise Conflict("The customer has no open subscription.")
    return subscription


@transaction.atomic
def subscription_cancel(*, customer: Customer, reason: str = "") -> Subscription:
    """Cancel the open (active or frozen) subscription."""
    subscription = _open_or_conflict(customer)
    if not isinstance(reason, str):
        raise HubError("cancelReason must be a string.")
    now = timezone.now()
    subscription.status, subscription.cancelled_at = Subscription.Status.CANCELLED, now
    subscription.cancel_reason = reason.strip()[:255]
    subscription.save()
    activity_record(
        customer=customer,
        kind=Activity.Kind.UNSUBSCRIBED,
        properties={
            **_plan_properties(subscription.plan),
            "subscription_id": str(subscription.public_id),
            "cancel_reason": subscription.cancel_reason or None,
        },
        at=now,
    )
    return subscription


@transaction.atomic
def subscription_freeze(*, customer: Customer) -> Subscription:
    """Freeze the active subscription (billing paused)."""
    subscription = _open_or_conflict(customer)
    if subscription.status != Subscription.Status.ACTIVE:
        raise Conflict("The subscription is already frozen.")
    now = timezone.now()
    subscription.status, subscription.frozen_at = Subscription.Status.FROZEN, now
    subscription.save()
    activity_record(
        customer=customer,
        kind=Activity.Kind.SUBSCRIPTION_FROZEN,
        properties={**_plan_properties(subscription.plan), "subscription_id": str(subscription.public_id)},
        at=now,
    )
    return subscription


@transaction.atomic
def subscription_unfreeze(*, customer: Customer) -> Subscription:
    """Unfreeze a frozen subscription."""
    subscription = _open_or_conflict(customer)
    if subscription.status != Subscription.Status.FROZEN:
        raise Conflict("The subscription is not frozen.")
    subscription.status, subscription.frozen_at = Subscription.Status.ACTIVE, None
    subscription.save()
    activity_record(
        customer=customer,
        kind=Activity.Kind.SUBSCRIPTION_UNFROZEN,
        properties={**_plan_properties(subscription.plan), "subscription_id": str(subscription.public_id)},
    )
    return subscription


@transaction.atomic
def subscription_update(*, customer: Customer, capped_amount: object) -> Subscription:
    """Change the usage charges' capped amount of the open subscription (no activity)."""
    subscription = _open_or_conflict(customer)
    try:
        capped = Decimal(str(capped_amount))
    except (InvalidOperation, ValueError):
        raise HubError("cappedAmount must be a number.") from None
    if isinstance(capped_amount, bool) or not capped.is_finite() or capped < 0 or capped >= Decimal("1e10"):
        raise HubError("cappedAmount must be zero or more.")
    subscription.capped_amount = capped.quantize(Decimal("0.01"))
    subscription.save(update_fields=["capped_amount", "updated_at"])
    return subscription
