"""Read paths of the core, each scoped to what the caller may see."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from .models import (
    Activity,
    ApiKey,
    App,
    Customer,
    Installation,
    Membership,
    Plan,
    Review,
    Subscription,
    Workspace,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def workspaces_for_user(*, user: User) -> QuerySet[Workspace]:
    """Workspaces the user is a member of."""
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def workspace_get_for_user(*, user: User, slug: str) -> Workspace:
    """The workspace with `slug` if the user is a member, else Http404."""
    workspace = workspaces_for_user(user=user).filter(slug=slug).first()
    if workspace is None:
        raise Http404("No such workspace.")
    return workspace


def membership_role(*, user: User, workspace: Workspace) -> str | None:
    return Membership.objects.filter(user=user, workspace=workspace).values_list("role", flat=True).first()


def apps_for_workspace(*, workspace: Workspace) -> QuerySet[App]:
    return workspace.apps.order_by("name")


def app_get_for_user(*, user: User, public_id: str | uuid.UUID) -> App:
    """The app with this public id if the user belongs to its workspace, else Http404."""
    try:
        public_id = uuid.UUID(str(public_id))
    except ValueError:
        raise Http404("No such app.") from None
    app = (
        App.objects.select_related("workspace")
        .filter(public_id=public_id, workspace__memberships__user=user)
        .first()
    )
    if app is None:
        raise Http404("No such app.")
    return app


def api_keys_for_app(*, app: App) -> QuerySet[ApiKey]:
    """The app's keys, active first, newest first."""
    return app.api_keys.select_related("created_by").order_by("revoked_at", "-created_at")


@dataclass(frozen=True)
class CustomerLifecycle:
    """What the Customer view shows of a customer's lifecycle."""

    installation: Installation | None
    subscription: Subscription | None  # the open (active or frozen) one
    plans: list[Plan]  # the app's plans one may subscribe to (and the current one), cheapest first
    reviews: list[Review]  # newest first
    activities: list[Activity]  # newest first


def customer_lifecycle_get(*, customer: Customer, limit: int = 10) -> CustomerLifecycle:
    """The customer's installation, open subscription, app plans and latest reviews and activities."""
    subscription = (
        Subscription.objects.select_related("plan")
        .filter(customer=customer, status__in=[Subscription.Status.ACTIVE, Subscription.Status.FROZEN])
        .first()
    )
    current = Q(pk=subscription.plan_id) if subscription else Q(pk__in=[])
    return CustomerLifecycle(
        installation=Installation.objects.filter(customer=customer).first(),
        subscription=subscription,
        plans=list(
            Plan.objects.filter(Q(archived_at__isnull=True) | current, app_id=customer.app_id).order_by(
                "amount", "name"
            )
        ),
        reviews=list(Review.objects.filter(customer=customer).order_by("-created_at")[:limit]),
        activities=list(Activity.objects.filter(customer=customer).order_by("-occurred_at")[:limit]),
    )


def plans_for_app(*, app: App) -> QuerySet[Plan]:
    """The app's plans, current ones first, then cheapest first, with their subscriber counts."""
    return (
        Plan.objects.filter(app=app)
        .annotate(
            open_subscriptions=Count(
                "subscriptions",
                filter=Q(subscriptions__status__in=[Subscription.Status.ACTIVE, Subscription.Status.FROZEN]),
            )
        )
        .order_by(F("archived_at").asc(nulls_first=True), "amount", "name")
    )


def plan_get_for_app(*, app: App, public_id: str | uuid.UUID) -> Plan:
    """The app's plan with this public id, else Http404."""
    try:
        public_id = uuid.UUID(str(public_id))
    except ValueError:
        raise Http404("No such plan.") from None
    plan = Plan.objects.filter(app=app, public_id=public_id).first()
    if plan is None:
        raise Http404("No such plan.")
    return plan
