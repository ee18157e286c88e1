"""Read paths of the integration screens, each scoped to the caller's workspaces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, Min, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from hub.models import Workspace
from hub.selectors import workspace_get_for_user

from .log_store import log_store
from .models import Attempt, Delivery, Integration, Replay

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def integrations_for_workspace(*, workspace: Workspace) -> QuerySet[Integration]:
    return workspace.integrations.prefetch_related("apps").order_by("name")


def integration_get_for_user(*, user: User, slug: str, integration_id: int) -> Integration:
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
    """What the delivery log shows at the top: the backlog, the last day's outcomes, latency, and
    the circuit while the destination is failing."""

    due_now: int
    retrying: int
    oldest_waiting: datetime | None
    delivered_24h: int
    failed_24h: int
    dead_24h: int
    p50_ms: float | None
    p95_ms: float | None
    outage_since: datetime | None
    outage_error: str
    probe_at: datetime | None

    @property
    def oldest_waiting_seconds(self) -> float | None:
        if self.oldest_waiting is None:
            return None
        return max(0.0, (timezone.now() - self.oldest_waiting).total_seconds())

    @property
    def oldest_waiting_age(self) -> str:
        seconds = int(self.oldest_waiting_seconds or 0)
        if seconds < 120:
            return f"{seconds} s"
        if seconds < 7200:
            return f"{seconds // 60} min"
        if seconds < 172800:
            return f"{seconds // 3600} h"
        return f"{seconds // 86400} days"

    @property
    def outage_summary(self) -> str:
        """What the destination is doing, in words: "is refusing connections", "is timing out"..."""
        error = self.outage_error or ""
        if error.startswith("connection error"):
            return "is refusing connections"
        if error.startswith("timeout"):
            return "is not answering in time"
        if error.startswith("HTTP 429"):
            return "is rate limiting (HTTP 429)"
        if error.startswith("HTTP "):
            return f"is answering {error.split(':', 1)[0]}"
        return "is failing"

    @property
    def probe_in_seconds(self) -> float | None:
        if self.probe_at is None:
            return None
        return max(0.0, (self.probe_at - timezone.now()).total_seconds())


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * q))]


def delivery_stats(*, integration: Integration) -> DeliveryStats:
    """Backlog (due now, retrying, oldest waiting), the last 24 hours' outcomes, and p50/p95 latency
    of the last 2,000 answered requests."""
    now = timezone.now()
    pending = Delivery.objects.filter(integration=integration, status=Delivery.Status.PENDING)
    backlog = pending.aggregate(
        due_now=Count("pk", filter=Q(next_attempt_at__lte=now)),
        retrying=Count("pk", filter=Q(next_attempt_at__gt=now)),
        oldest=Min("created_at"),
    )
    day = Delivery.objects.filter(integration=integration, created_at__gte=now - timedelta(days=1)).aggregate(
        **{s: Count("pk", filter=Q(status=s)) for s in ("delivered", "failed", "dead")}
    )
    recent = (
        Attempt.objects.filter(integration=integration, latency_ms__isnull=False)
        .order_by("-created_at")
        .values_list("latency_ms", flat=True)[:2000]
    )
    latencies = sorted(ms for ms in recent if ms is not None)
    return DeliveryStats(
        due_now=backlog["due_now"],
        retrying=backlog["retrying"],
        oldest_waiting=backlog["oldest"],
        delivered_24h=day["delivered"],
        failed_24h=day["failed"],
        dead_24h=day["dead"],
        p50_ms=_percentile(latencies, 0.5),
        p95_ms=_percentile(latencies, 0.95),
        outage_since=integration.outage_since,
        outage_error=integration.outage_error,
        probe_at=integration.probe_at,
    )


def delivery_attempts(*, delivery: Delivery, limit: int = 10) -> list[Attempt]:
    """The requests that carried this delivery, newest first. They all happened between its
    creation and its last update, so only that slice of the integration's attempts is read."""
    window = Attempt.objects.filter(
        integration_id=delivery.integration_id,
        created_at__gte=delivery.created_at - timedelta(seconds=1),
        created_at__lte=delivery.updated_at + timedelta(seconds=1),
    ).order_by("-created_at")
    return log_store().attempts_carrying(attempts=window, delivery_id=str(delivery.pk), limit=limit)


def delivery_message_pretty(delivery: Delivery) -> str:
    """The stored message, indented for reading (the bytes sent are `delivery.message`)."""
    try:
        return json.dumps(json.loads(delivery.message), indent=2, ensure_ascii=False)
    except ValueError:
        return delivery.message


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
        qs = qs.filter(item_kind=Delivery.ItemKind.TEST)
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
            q |= Q(message_id=str(uuid.UUID(search)))
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


def delivery_status_label(delivery: Delivery) -> str:
    """A delivery's state in words: "Retrying (attempt 6 at 14:05:10)", "Queued", "Delivered"..."""
    if delivery.status != Delivery.Status.PENDING:
        return delivery.get_status_display()
    if delivery.attempts == 0:
        return "Queued"
    if delivery.next_attempt_at is None:
        return f"Retrying (attempt {delivery.attempts + 1})"
    at = timezone.localtime(delivery.next_attempt_at).strftime("%H:%M:%S")
    return f"Retrying (attempt {delivery.attempts + 1} at {at})"


def oldest_kept(*, integration: Integration) -> datetime | None:
    """The creation time of the integration's oldest delivery still in the log."""
    first = (
        Delivery.objects.filter(integration=integration)
        .order_by("created_at")
        .values_list("created_at", flat=True)[:1]
    )
    return first[0] if first else None
