"""Read paths of usage events, customers and metrics for the screens (keyset pagination, no OFFSET)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from hub.models import App, Customer, Plan
from hub.timestamps import parse_iso_datetime

from .models import Metric, PlanUsageLimit, UsageEvent


@dataclass(frozen=True)
class Cursor:
    """A position in the (timestamp desc, id desc) order."""

    timestamp: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.timestamp.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Cursor | None:
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            ts, _, pk = raw.rpartition("|")
            return cls(parse_iso_datetime(ts), int(pk))
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass(frozen=True)
class EventPage:
    events: list[UsageEvent]
    older: Cursor | None  # cursor for the next (older) page, None on the last page
    newer: Cursor | None  # cursor for the previous (newer) page, None on the first page


def usage_events_filtered(
    *,
    app: App,
    customer: Customer | None = None,
    event_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[UsageEvent]:
    qs = UsageEvent.objects.filter(app=app)
    if customer is not None:
        qs = qs.filter(customer=customer)
    if event_name:
        qs = qs.filter(event_name=event_name)
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    return qs


def usage_events_page(
    qs: QuerySet[UsageEvent],
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    limit: int = 50,
) -> EventPage:
    """One page of `qs`, newest first, strictly older than `before` or newer than `after`."""
    qs = qs.select_related("customer")
    if after is not None:
        rows = list(
            qs.filter(
                Q(timestamp__gt=after.timestamp) | Q(timestamp=after.timestamp, id__gt=after.id)
            ).order_by("timestamp", "id")[: limit + 1]
        )
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        newer = _cursor(rows[0]) if rows and more_newer else None
        older = _cursor(rows[-1]) if rows else None
        return EventPage(rows, older=older, newer=newer)
    if before is not None:
        qs = qs.filter(Q(timestamp__lt=before.timestamp) | Q(timestamp=before.timestamp, id__lt=before.id))
    rows = list(qs.order_by("-timestamp", "-id")[: limit + 1])
    more_older = len(rows) > limit
    rows = rows[:limit]
    return EventPage(
        rows,
        older=_cursor(rows[-1]) if rows and more_older else None,
        newer=_cursor(rows[0]) if rows and before is not None else None,
    )


def _cursor(event: UsageEvent) -> Cursor:
    return Cursor(event.timestamp, event.id)


def recent_event_names(*, app: App, sample: int = 2000) -> list[str]:
    """Event names among the app's latest events (for filter suggestions; bounded cost)."""
    latest = UsageEvent.objects.filter(app=app).order_by("-timestamp", "-id").values("event_name")[:sample]
    return sorted({row["event_name"] for row in latest})


def customers_search(*, app: App, query: str = "") -> QuerySet[Customer]:
    qs = Customer.objects.filter(app=app)
    query = query.strip()
    if query:
        qs = qs.filter(
            Q(name__icontains=query)
            | Q(email__icontains=query)
            | Q(platform_id__icontains=query)
            | Q(myshopify_domain__icontains=query)
            | Q(contacts__email__icontains=query)
        ).distinct()
    return qs.order_by("-created_at", "-id")


def customer_get_for_app(*, app: App, public_id: str) -> Customer | None:
    """The app's customer with this hub id, or None (also for a malformed id)."""
    try:
        parsed = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return Customer.objects.filter(app=app, public_id=parsed).prefetch_related("contacts").first()


def metrics_for_app(*, app: App) -> list[Metric]:
    """The app's metrics by name."""
    return list(Metric.objects.filter(app=app).order_by("name"))


def plan_limits_for_metric(*, metric: Metric) -> list[tuple[Plan, PlanUsageLimit | None]]:
    """Every plan of the metric's app, cheapest first, with its limit of the metric (None: unlimited)."""
    limits = {u.plan_id: u for u in PlanUsageLimit.objects.filter(metric=metric)}
    return [
        (plan, limits.get(plan.pk))
        for plan in Plan.objects.filter(app_id=metric.app_id).order_by("amount", "name")
    ]
