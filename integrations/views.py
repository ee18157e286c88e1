"""Screens: Settings → Integrations → Segment (list, form, Send test event) and the delivery log."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hub.errors import HubError
from hub.models import Activity
from hub.selectors import workspace_get_for_user
from hub.timestamps import parse_datetime_local

from . import selectors, services
from .delivery_http import REQUEST_EXCERPT_BYTES
from .destinations import DESTINATION_KINDS
from .forms import SegmentIntegrationForm
from .models import Delivery, Integration

_TEST_RESULT = "integrations:test_result"


@login_required
def integration_list(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_get_for_user(user=request.user, slug=slug)
    integrations = list(selectors.integrations_for_workspace(workspace=workspace))
    return render(
        request,
        "integrations/integration_list.html",
        {
            "workspace": workspace,
            "integrations": [i for i in integrations if i.kind == Integration.Kind.SEGMENT],
            "destinations": [i for i in integrations if i.kind != Integration.Kind.SEGMENT],
            "destination_kinds": [
                (f"destination_create_{k}", Integration.Kind(k).label) for k in DESTINATION_KINDS
            ],
            "activity_total": len(Activity.Kind.values),  # what the form offers
            "active_tab": "integrations",
        },
    )


def _form_page(request, workspace, form, integration=None, status=200):
    test_result = request.session.pop(_TEST_RESULT, None)
    if integration is None or not test_result or test_result.get("integration") != integration.pk:
        test_result = None
    return render(
        request,
        "integrations/segment_form.html",
        {
            "workspace": workspace,
            "form": form,
            "integration": integration,
            "masked_key": selectors.mask(integration.write_key) if integration else "",
            "subscriptions": integration.subscriptions.all() if integration else (),
            "test_result": test_result,
            "active_tab": "integrations",
        },
        status=status,
    )


@login_required
def segment_create(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_get_for_user(user=request.user, slug=slug)
    form = SegmentIntegrationForm(request.POST or None, workspace=workspace)
    if request.method == "POST" and form.is_valid():
        try:
            integration = services.integration_save(workspace=workspace, **form.service_kwargs())
        except HubError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Segment integration “{integration.name}” saved.")
            return redirect("integration_edit", slug=workspace.slug, integration_id=integration.pk)
    return _form_page(request, workspace, form)


@login_required
def integration_edit(request: HttpRequest, slug: str, integration_id: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=integration_id
    )
    workspace = integration.workspace
    if integration.kind != Integration.Kind.SEGMENT:
        return redirect("destination_edit", slug=workspace.slug, destination_id=integration.pk)
    form = SegmentIntegrationForm(request.POST or None, workspace=workspace, integration=integration)
    if request.method == "POST" and form.is_valid():
        try:
            services.integration_save(workspace=workspace, integration=integration, **form.service_kwargs())
        except HubError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Segment integration “{integration.name}” saved.")
            return redirect("integration_edit", slug=workspace.slug, integration_id=integration.pk)
    return _form_page(request, workspace, form, integration)


@login_required
@require_POST
def integration_test(request: HttpRequest, slug: str, integration_id: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=integration_id
    )
    delivery, attempt = services.integration_send_test(integration=integration)
    request.session[_TEST_RESULT] = {
        "integration": integration.pk,
        "delivery": str(delivery.pk),
        "ok": delivery.status == Delivery.Status.DELIVERED,
        "status_code": attempt.status_code if attempt else None,
        "response": (attempt.response_excerpt if attempt else "")[:500],
        "error": (attempt.error if attempt else delivery.last_error)[:500],
        "latency_ms": round(attempt.latency_ms) if attempt and attempt.latency_ms is not None else None,
    }
    return redirect("integration_edit", slug=integration.workspace.slug, integration_id=integration.pk)


@login_required
def delivery_log(request: HttpRequest, slug: str, integration_id: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=integration_id
    )
    params = request.GET
    since, until = parse_datetime_local(params.get("since")), parse_datetime_local(params.get("until"))
    qs = selectors.deliveries_filtered(
        integration=integration,
        status=params.get("status") or None,
        kind=params.get("kind") or None,
        since=since,
        until=until,
        search=(params.get("q") or "").strip() or None,
    )
    page = Paginator(qs, 50).get_page(params.get("page"))
    rows = []
    for d in page.object_list:
        pretty = selectors.delivery_message_pretty(d)
        try:
            parsed = json.loads(d.message)
        except ValueError:
            parsed = {}
        rows.append(
            {
                "delivery": d,
                "event": _label(d, parsed),
                "message": pretty,
                "attempts": selectors.delivery_attempts(delivery=d),
                "status_label": selectors.delivery_status_label(d),
            }
        )
    replays = selectors.replays_with_progress(integration=integration)
    query = params.copy()
    query.pop("page", None)
    return render(
        request,
        "integrations/delivery_log.html",
        {
            "workspace": integration.workspace,
            "integration": integration,
            "stats": selectors.delivery_stats(integration=integration),
            "probe_seconds": settings.HUB_DELIVERY_PROBE_SECONDS,
            "keep_delivered_days": settings.HUB_DELIVERY_KEEP_DELIVERED_DAYS,
            "keep_failed_days": settings.HUB_DELIVERY_KEEP_FAILED_DAYS,
            "oldest_kept": selectors.oldest_kept(integration=integration),
            "request_excerpt_bytes": REQUEST_EXCERPT_BYTES,
            "page": page,
            "rows": rows,
            "replays": replays,
            "refresh": any(r["pending"] for r in replays),
            "statuses": Delivery.Status.choices,
            "kinds": Activity.Kind.choices,
            "filters": params,
            "query": query.urlencode(),
            "active_tab": "integrations",
        },
    )


@login_required
@require_POST
def delivery_retry(request: HttpRequest, slug: str, integration_id: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=integration_id
    )
    delivery = Delivery.objects.filter(
        integration=integration, pk=_uuid(request.POST.get("delivery"))
    ).first()
    if delivery is None:
        messages.error(request, "No such delivery.")
    else:
        try:
            services.delivery_retry(delivery=delivery)
        except HubError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Delivery queued again.")
    return redirect("delivery_log", slug=integration.workspace.slug, integration_id=integration.pk)


@login_required
@require_POST
def deliveries_replay(request: HttpRequest, slug: str, integration_id: int) -> HttpResponse:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=integration_id
    )
    since, until = (
        parse_datetime_local(request.POST.get("since")),
        parse_datetime_local(request.POST.get("until")),
    )
    if since is None or until is None:
        messages.error(request, "Choose the start and end of the range to replay.")
    else:
        try:
            replay = services.deliveries_replay(
                integration=integration, since=since, until=until, by=request.user.get_username()
            )
        except HubError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Replaying {replay.total} failed deliveries.")
    return redirect("delivery_log", slug=integration.workspace.slug, integration_id=integration.pk)


def _label(delivery: Delivery, message: dict) -> str:
    if isinstance(message, dict):
        for key in ("event", "event_type", "eventName", "event_name", "type"):
            if isinstance(message.get(key), str):
                return message[key]
    return delivery.get_item_kind_display()


def _uuid(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
