"""Screens of usage data: Usage metrics → Usage events, Customers and the Customer view."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from hub.selectors import app_get_for_user, customer_lifecycle_get
from hub.services.customer_refs import customer_get
from hub.timestamps import parse_datetime_local

from . import selectors
from .metric_views import bucket_label, number_display
from .metrics.periods import billing_period, day_start
from .metrics.selectors import as_number, customer_usage, metrics_daily_values

# (customer_usage key, label) of the Customer view's usage cards, the current billing period first.
USAGE_WINDOWS = (
    ("currentValue", "Current period"),
    ("monthToDateValue", "Month to date"),
    ("last24HoursValue", "Last 24 h"),
    ("last7DaysValue", "7 days"),
    ("last30DaysValue", "30 days"),
    ("last90DaysValue", "90 days"),
    ("last365DaysValue", "365 days"),
    ("allTimeValue", "All time"),
)


@login_required
def usage_events(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    params = request.GET
    customer_ref = params.get("customer", "").strip()
    customer = customer_get(app=app, reference=customer_ref) if customer_ref else None
    since, until = parse_datetime_local(params.get("since")), parse_datetime_local(params.get("until"))
    errors = []
    if customer_ref and customer is None:
        errors.append(f"No customer matches “{customer_ref}”.")
    if params.get("since") and since is None:
        errors.append("“From” is not a valid date and time.")
    if params.get("until") and until is None:
        errors.append("“To” is not a valid date and time.")
    event_name = params.get("event", "").strip()
    if errors and customer_ref and customer is None:
        page = selectors.EventPage([], older=None, newer=None)
    else:
        qs = selectors.usage_events_filtered(
            app=app, customer=customer, event_name=event_name or None, since=since, until=until
        )
        page = selectors.usage_events_page(
            qs,
            before=selectors.Cursor.decode(params.get("before")),
            after=selectors.Cursor.decode(params.get("after")),
        )
    filters = {k: params.get(k, "") for k in ("customer", "event", "since", "until")}
    base_query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "events/usage_events.html",
        {
            "workspace": app.workspace,
            "app": app,
            "active_tab": "usage_events",
            "page": page,
            "events": [(e, json.dumps(e.properties, indent=2, sort_keys=True)) for e in page.events],
            "filters": filters,
            "base_query": base_query,
            "errors": errors,
            "event_names": selectors.recent_event_names(app=app),
        },
    )


@login_required
def customers(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    query = request.GET.get("q", "")
    paginator = Paginator(selectors.customers_search(app=app, query=query), 50)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "events/customers.html",
        {"workspace": app.workspace, "app": app, "active_tab": "customers", "page": page, "q": query},
    )


@login_required
def customer_detail(request: HttpRequest, app_id: str, customer_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    customer = selectors.customer_get_for_app(app=app, public_id=customer_id)
    if customer is None:
        raise Http404("No such customer.")
    qs = selectors.usage_events_filtered(app=app, customer=customer)
    recent = selectors.usage_events_page(qs, limit=25)
    return render(
        request,
        "events/customer_detail_usage.html",  # customer_detail.html with its usage block filled
        {
            "workspace": app.workspace,
            "app": app,
            "active_tab": "customers",
            "customer": customer,
            "custom_fields": _custom_fields(customer.custom_fields),
            "timeline": [(e, json.dumps(e.properties, indent=2, sort_keys=True)) for e in recent.events],
            "more_events": recent.older is not None,
            "lifecycle": customer_lifecycle_get(customer=customer),
            "usage_cards": _usage_cards(app=app, customer=customer),
            "billing_period": billing_period(customer=customer),
        },
    )


def _usage_cards(*, app, customer) -> list[dict]:
    """A card per metric: the customer's values over the usage windows, and the last 90 days per day."""
    metrics = selectors.metrics_for_app(app=app)
    if not metrics:
        return []
    usage = customer_usage(customer=customer)
    today = day_start(timezone.now())
    daily = metrics_daily_values(
        metrics=metrics, customer=customer, start=today - timedelta(days=89), end=today + timedelta(days=1)
    )
    cards = []
    for metric in metrics:
        values = usage[str(metric.public_id)]
        points = daily[metric.pk]
        cards.append(
            {
                "metric": metric,
                "stats": [(label, number_display(values[key])) for key, label in USAGE_WINDOWS],
                "chart_id": f"usage-chart-{metric.public_id}",
                "chart": {
                    "labels": [bucket_label("daily", day) for day, _ in points],
                    "total": [as_number(v) for _, v in points],
                    "groups": [],
                    "stacked": metric.aggregation in ("count", "sum"),
                },
                "table": [
                    {"bucket": day, "total": number_display(v), "groups": []} for day, v in reversed(points)
                ],
            }
        )
    return cards


def _custom_fields(fields) -> list[tuple[str, str]]:
    """A customer's custom fields as name and value to read: text as is, anything else as JSON."""
    if not isinstance(fields, dict):
        return [("(value)", json.dumps(fields))]
    return [
        (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in sorted(fields.items())
    ]
