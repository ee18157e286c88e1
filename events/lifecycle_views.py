"""The Customer view's lifecycle actions: each form posts here, one service of hub.services.lifecycle runs,
and the answer (done, or the Conflict/HubError) comes back as a message on the Customer view.

Scoped like the view itself: the app must be in one of the user's workspaces and the customer
the app's, else 404, before anything is read from the form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from hub.errors import HubError
from hub.forms import CancelForm, PlanChoiceForm, ReviewForm
from hub.models import Activity, Customer
from hub.selectors import app_get_for_user
from hub.services import lifecycle

from . import selectors

_SUBSCRIBED = {
    Activity.Kind.SUBSCRIBED: "Subscribed to {plan}.",
    Activity.Kind.UPGRADED: "Upgraded to {plan}.",
    Activity.Kind.DOWNGRADED: "Downgraded to {plan}.",
    Activity.Kind.PLAN_CHANGED: "Changed plan to {plan}.",
}


def _customer(request: HttpRequest, app_id: str, customer_id: str) -> Customer:
    app = app_get_for_user(user=request.user, public_id=app_id)
    customer = selectors.customer_get_for_app(app=app, public_id=customer_id)
    if customer is None:
        raise Http404("No such customer.")
    return customer


def _back(customer: Customer) -> HttpResponse:
    url = reverse("customer_detail", args=[customer.app.public_id, customer.public_id])
    return redirect(f"{url}#lifecycle")


def _run(
    request: HttpRequest, customer: Customer, change: Callable[[], Any], done: str | Callable[[Any], str]
) -> HttpResponse:
    """Run one lifecycle service; its refusal (409 Conflict or other HubError) becomes the message."""
    try:
        result = change()
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done(result) if callable(done) else done)
    return _back(customer)


def _invalid(request: HttpRequest, customer: Customer, form: Form) -> HttpResponse:
    for field, errors in form.errors.items():
        messages.error(request, f"{form.fields[field].label or field.capitalize()}: {' '.join(errors)}")
    return _back(customer)


def _transition(service: str, done: str):
    """A view that runs `hub.services.lifecycle.<service>(customer=...)`; it takes nothing from the
    form."""

    @login_required
    @require_POST
    def view(request: HttpRequest, app_id: str, customer_id: str) -> HttpResponse:
        customer = _customer(request, app_id, customer_id)
        return _run(request, customer, lambda: getattr(lifecycle, service)(customer=customer), done)

    view.__name__ = view.__qualname__ = service
    return view


installation_install = _transition("installation_install", "App installed.")
installation_uninstall = _transition("installation_uninstall", "App uninstalled.")
installation_freeze = _transition("installation_freeze", "Installation frozen.")
installation_reactivate = _transition("installation_reactivate", "Installation reactivated.")
subscription_freeze = _transition("subscription_freeze", "Subscription frozen.")
subscription_unfreeze = _transition("subscription_unfreeze", "Subscription unfrozen.")


@login_required
@require_POST
def subscription_subscribe(request: HttpRequest, app_id: str, customer_id: str) -> HttpResponse:
    customer = _customer(request, app_id, customer_id)
    form = PlanChoiceForm(request.POST, app=customer.app)
    if not form.is_valid():
        return _invalid(request, customer, form)
    plan = form.cleaned_data["plan"]
    return _run(
        request,
        customer,
        lambda: lifecycle.subscription_subscribe(customer=customer, plan=plan),
        lambda result: _SUBSCRIBED[result[1]].format(plan=plan.name),
    )


@login_required
@require_POST
def subscription_cancel(request: HttpRequest, app_id: str, customer_id: str) -> HttpResponse:
    customer = _customer(request, app_id, customer_id)
    form = CancelForm(request.POST)
    if not form.is_valid():
        return _invalid(request, customer, form)
    reason = form.cleaned_data["reason"]
    return _run(
        request,
        customer,
        lambda: lifecycle.subscription_cancel(customer=customer, reason=reason),
        "Subscription cancelled.",
    )


@login_required
@require_POST
def review_create(request: HttpRequest, app_id: str, customer_id: str) -> HttpResponse:
    customer = _customer(request, app_id, customer_id)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _invalid(request, customer, form)
    rating, text = form.cleaned_data["rating"], form.cleaned_data["text"]
    return _run(
        request,
        customer,
        lambda: lifecycle.review_create(customer=customer, rating=rating, text=text),
        "Review added.",
    )
