"""Read paths of the integration screens, each scoped to the caller's workspaces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from hub.models import Workspace
from hub.selectors import workspace_get_for_user

from .models import Attempt, Delivery, Integration, Replay


def integrations_for_workspace(*, workspace: Workspace) -> QuerySet[Integration]:
    return workspace.integrations.prefetch_related("apps").order_by("name")


def integration_get_for_user(*, user: AbstractBaseUser, slug: str, integration_id: int) -> Integration:
    """The integration if it belongs to a workspace of the user (by slug), else Http404."""
    workspace = workspace_get_for_user(user=user, slug=slug)
    integration = Integration.objects.filter(pk=integration_id, workspace=workspace).first()
    if integration is None:
        raise Http404("No such integration.")
    integration.workspace = workspace
    return integration


def mask(secret: str) -> str:
    """A write key as the screens show it: bullets and its last four characters."""
    if not secret:
        return ""
    return "•" * 8 + secret[-4:] if len(secret) > 8 else "•" * 8


@dataclass(frozen=True)
class DeliveryStats:
    delivered: int
    pending: int
    failed: int
    dead: int
    p95_ms: float | None


def delivery_stats(*, integration: Integration) -> DeliveryStats:
    """Counts per status and the p95 latency of the last 2,000 answered requests."""
    counts = Delivery.objects.filter(integration=integration).aggregate(
        **{s: Count("pk", filter=Q(status=s)) for s in Delivery.Status.values}
    )
    latencies = sorted(
        Attempt.objects.filter(integration=integration, latency_ms__isnull=False)
        .order_by("-created_at")
        .values_list("latency_ms", flat=True)[:2000]
    )
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] if latencies else None
    return DeliveryStats(p95_ms=p95, **counts)


def deliveries_filtered(
    *,
    integration: Integration,
    status: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
) -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(integration=integration).select_related(
        "activity", "activity__customer", "last_attempt"
    )
    if status in Delivery.Status.values:
        qs = qs.filter(status=status)
    if kind == "test":
        qs = qs.filter(activity__isnull=True)
    elif kind:
        qs = qs.filter(activity__kind=kind)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if search:
        q = Q(activity__customer__name__icontains=search) | Q(activity__customer__platform_id=search)
        q |= Q(activity__customer__myshopify_domain=search.lower())
        try:
            import uuid

            q |= Q(pk=uuid.UUID(search)) | Q(activity_id=uuid.UUID(search))
        except ValueError:
            pass
        qs = qs.filter(q)
    return qs.order_by("-created_at")


def replays_with_progress(*, integration: Integration, limit: int = 5) -> list[dict]:
    replays = (
        Replay.objects.filter(integration=integration)
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__status="delivered")),
            pending=Count("deliveries", filter=Q(deliveries__status="pending")),
        )
        .order_by("-created_at")[:limit]
    )
    out = []
    for r in replays:
        done = r.total - r.pending
        out.append(
            {
                "replay": r,
                "delivered": r.delivered,
                "pending": r.pending,
                "done": done,
                "percent": 100 if not r.total else int(done * 100 / r.total),
            }
        )
    return out
