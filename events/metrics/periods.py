"""Time buckets and periods of usage metrics, all in UTC: the one copy of their arithmetic.

Buckets are the starts of hours, days, ISO weeks (Monday) and calendar months that rollup rows
are keyed by; periods are the daily, weekly and monthly steps of reports; a customer's billing
period follows their subscription or, without one, the calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from hub.errors import HubError
from hub.models import Customer, Plan, Subscription

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the bucket of all-time rows ("a")
PERIODS = ("daily", "weekly", "monthly")
MAX_BUCKETS = 1000


# --- Buckets ----------------------------------------------------------------------------------


def hour_start(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(ts: datetime) -> datetime:
    """Monday of the ISO week (UTC)."""
    d = day_start(ts)
    return d - timedelta(days=d.weekday())


def month_start(ts: datetime) -> datetime:
    return day_start(ts).replace(day=1)


def date_start(d: date) -> datetime:
    """The start of a calendar date in UTC."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def as_utc(value: datetime | date) -> datetime:
    """A datetime in UTC (a naive one is taken as UTC), or the start of a date."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return date_start(value)


def hour_rows_since(now: datetime | None = None) -> datetime | None:
    """The first hour whose rows are kept (HUB_METRICS_HOUR_ROWS_HOURS before this hour); None: all."""
    hours = settings.HUB_METRICS_HOUR_ROWS_HOURS
    if not hours:
        return None
    return hour_start(now or timezone.now()) - timedelta(hours=hours)


# --- Periods ----------------------------------------------------------------------------------


def period_start(period: str, ts: datetime) -> datetime:
    if period == "daily":
        return day_start(ts)
    if period == "weekly":
        return week_start(ts)
    return month_start(ts)


def period_next(period: str, start: datetime) -> datetime:
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def period_back(period: str, start: datetime, n: int) -> datetime:
    if period == "daily":
        return start - timedelta(days=n)
    if period == "weekly":
        return start - timedelta(days=7 * n)
    months = start.year * 12 + start.month - 1 - n
    return start.replace(year=months // 12, month=months % 12 + 1)


def period_buckets(period: str, start: datetime, end: datetime) -> list[datetime]:
    """Starts of the periods from the one holding `start` to the one holding `end`."""
    out, cur = [], period_start(period, start)
    while cur <= end:
        out.append(cur)
        if len(out) > MAX_BUCKETS:
            raise HubError(f"At most {MAX_BUCKETS} {period} periods in one report; narrow the range.")
        cur = period_next(period, cur)
    return out


# --- Billing periods --------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingPeriod:
    start: datetime
    end: datetime
    source: str  # "subscription" or "calendar month"


def billing_period(*, customer: Customer, now: datetime | None = None,
                   subscription: Subscription | None = None) -> BillingPeriod:  # fmt: skip
    """The customer's current billing period.

    With an active or frozen subscription: 30-day (or 365-day for annual plans) periods counted
    from the start of the UTC day it was activated. Otherwise the calendar month.
    """
    now = now or timezone.now()
    if subscription is None:
        subscription = (
            Subscription.objects.select_related("plan")
            .filter(customer=customer, status__in=[Subscription.Status.ACTIVE, Subscription.Status.FROZEN])
            .first()
        )
    if subscription is not None:
        length = timedelta(days=365 if subscription.plan.interval == Plan.Interval.ANNUAL else 30)
        anchor = day_start(subscription.activated_at)
        k = max(0, (now - anchor) // length)
        start = anchor + k * length
        return BillingPeriod(start, start + length, "subscription")
    start = month_start(now)
    return BillingPeriod(start, period_next("monthly", start), "calendar month")
