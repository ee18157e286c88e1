"""Screens of an app's plans: the list, the form (price, interval and usage limits per metric), archive.

They live in `events` because a plan's form also sets its usage limits, which belong to metrics.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hub.errors import HubError
from hub.forms import PlanForm
from hub.models import App, Plan
from hub.selectors import app_get_for_user, plan_get_for_app, plans_for_app
from hub.services import plans as plan_services

from .metric_views import number_display, thresholds_parse
from .metrics.limits import DEFAULT_THRESHOLDS, plan_usage_limit_remove, plan_usage_limit_set
from .models import PlanUsageLimit
from .selectors import metrics_for_app


def _context(app: App, **extra: Any) -> dict:
    return {"workspace": app.workspace, "app": app, "active_tab": "plans", **extra}


@login_required
def plans(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    rows = list(plans_for_app(app=app))
    limits: dict[int, list[PlanUsageLimit]] = {}
    for usage_limit in PlanUsageLimit.objects.filter(plan__app=app).select_related("metric"):
        limits.setdefault(usage_limit.plan_id, []).append(usage_limit)
    return render(
        request,
        "events/plans.html",
        _context(
            app,
            plans=[
                {
                    "plan": plan,
                    "limits": [(u.metric, number_display(u.limit)) for u in limits.get(plan.pk, [])],
                }
                for plan in rows
            ],
        ),
    )


def _limit_rows(app: App, plan: Plan | None, posted=None, errors=None) -> list[dict]:
    saved = {u.metric_id: u for u in PlanUsageLimit.objects.filter(plan=plan)} if plan else {}
    rows = []
    for metric in metrics_for_app(app=app):
        key = str(metric.public_id)
        if posted is not None:
            limit, thresholds = posted.get(key, ("", ""))
        elif metric.pk in saved:
            limit = number_display(saved[metric.pk].limit).replace(",", "")
            thresholds = ", ".join(str(t) for t in saved[metric.pk].thresholds)
        else:
            limit, thresholds = "", ", ".join(str(t) for t in DEFAULT_THRESHOLDS)
        error = (errors or {}).get(key)
        rows.append({"metric": metric, "key": key, "limit": limit, "thresholds": thresholds, "error": error})
    return rows


@login_required
def plan_edit(request: HttpRequest, app_id: str, plan_id: str | None = None) -> HttpResponse:
    """Create a plan or change one, with its usage limits; nothing is saved when any part is wrong."""
    app = app_get_for_user(user=request.user, public_id=app_id)
    plan = plan_get_for_app(app=app, public_id=plan_id) if plan_id else None
    form = PlanForm(request.POST or None, plan=plan)
    posted: dict[str, tuple[str, str]] | None = None
    errors: dict[str, str] = {}
    if request.method == "POST":
        metrics = metrics_for_app(app=app)
        posted = {
            str(m.public_id): (
                request.POST.get(f"limit_{m.public_id}", "").strip().replace(",", ""),
                request.POST.get(f"thresholds_{m.public_id}", "").strip(),
            )
            for m in metrics
        }
        if form.is_valid():
            with transaction.atomic():
                try:
                    saved = plan_services.plan_save(app=app, plan=plan, **form.cleaned_data)
                except HubError as exc:
                    form.add_error("name" if "name" in str(exc) else None, str(exc))
                    saved = None
                for metric in metrics if saved else []:
                    limit, thresholds = posted[str(metric.public_id)]
                    try:
                        if limit:
                            plan_usage_limit_set(plan=saved, metric=metric, limit=limit,
                                                 thresholds=thresholds_parse(thresholds))  # fmt: skip
                        else:
                            plan_usage_limit_remove(plan=saved, metric=metric)
                    except HubError as exc:
                        errors[str(metric.public_id)] = str(exc)
                if saved is None or errors:
                    transaction.set_rollback(True)
            if saved is not None and not errors:
                messages.success(request, f"Plan “{saved.name}” saved.")
                return redirect("plans", app_id=app.public_id)
    return render(
        request,
        "events/plan_form.html",
        _context(app, plan=plan, form=form, limits=_limit_rows(app, plan, posted, errors)),
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def plan_archive(request: HttpRequest, app_id: str, plan_id: str) -> HttpResponse:
    """Archive the plan, or restore it with `restore=1`."""
    app = app_get_for_user(user=request.user, public_id=app_id)
    plan = plan_get_for_app(app=app, public_id=plan_id)
    restore = request.POST.get("restore") == "1"
    plan_services.plan_archive(plan=plan, archived=not restore)
    if restore:
        messages.success(request, f"Plan “{plan.name}” restored: customers can subscribe to it again.")
    else:
        note = "it takes no new subscriptions; the ones it has keep running."
        messages.success(request, f"Plan “{plan.name}” archived: {note}")
    return redirect("plans", app_id=app.public_id)
