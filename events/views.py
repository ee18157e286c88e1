"""Screens of usage data: Usage metrics → Usage events, Customers and the Customer view."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hub.customers import customer_get
from hub.selectors import app_get_for_user, customer_lifecycle_get

from . import selectors


def _parse_local(value: str | None) -> datetime | None:
    """A datetime-local input value (or ISO string) as an aware UTC datetime."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@login_required
def usage_events(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    params = request.GET
    customer_ref = params.get("customer", "").strip()
    customer = customer_get(app=app, reference=customer_ref) if customer_ref else None
    since, until = _parse_local(params.get("since")), _parse_local(params.get("until"))
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
        "events/customer_detail.html",
        {
            "workspace": app.workspace,
            "app": app,
            "active_tab": "customers",
            "customer": customer,
            "custom_fields": json.dumps(customer.custom_fields, indent=2, sort_keys=True),
            "timeline": [(e, json.dumps(e.properties, indent=2, sort_keys=True)) for e in recent.events],
            "more_events": recent.older is not None,
            "lifecycle": customer_lifecycle_get(customer=customer),
        },
    )
