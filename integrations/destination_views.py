"""Screens: Settings → Integrations → destinations (Metronome, Kable, signed webhooks): the form,
subscriptions with a live mapping preview on a recent event, Send test event, backfills."""

from __future__ import annotations

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from events.models import UsageEvent
from hub.errors import HubError
from hub.selectors import workspace_get_for_user

from . import selectors
from .backfill import backfill_cancel, backfill_start
from .connectors import MessageRefused, connector_for
from .destinations import DESTINATION_KINDS, destination_save, subscription_save, webhook_rotation_end
from .forms import BackfillForm, DestinationForm, SubscriptionForm
from .forwarding import EVENT_FIELDS, event_message, subscription_compile
from .models import Backfill, Integration, Subscription
from .sources.mapping_engine import MappingError, mapping_values
from .sources.triggers import TriggerError

TEST_RESULT = "integrations:test_result"
SAMPLE_EVENT = {
    "type": "track",
    "event": "api_call",
    "messageId": "sample-event-1",
    "timestamp": "2026-01-01T12:00:00.000Z",
    "userId": "3f6c8d2e-0000-4000-8000-000000000001",
    "properties": {"tokens": 120, "model": "small"},
    "context": {"groupId": "3f6c8d2e-0000-4000-8000-000000000001"},
    "customer": {"id": "3f6c8d2e-0000-4000-8000-000000000001", "platformId": "shop-1",
                 "myshopifyDomain": "shop-1.myshopify.com", "name": "Shop 1", "customFields": {}},
}  # fmt: skip


def _destination(request: HttpRequest, slug: str, destination_id: int) -> Integration:
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=destination_id
    )
    if integration.kind not in DESTINATION_KINDS:
        raise Http404("No such destination.")
    return integration


def _subscribable(request: HttpRequest, slug: str, destination_id: int) -> Integration:
    """A destination, or a Segment integration (its usage events, customers and contacts)."""
    integration = selectors.integration_get_for_user(
        user=request.user, slug=slug, integration_id=destination_id
    )
    if not connector_for(integration.kind).actions:
        raise Http404("No such destination.")
    return integration


def _settings_url(integration: Integration) -> str:
    name = "destination_edit" if integration.kind in DESTINATION_KINDS else "integration_edit"
    key = "destination_id" if integration.kind in DESTINATION_KINDS else "integration_id"
    return reverse(name, kwargs={"slug": integration.workspace.slug, key: integration.pk})


def sample_event(integration: Integration) -> tuple[dict, bool]:
    """The track-call view of the latest usage event of the destination's apps (True), or a sample."""
    row = (
        UsageEvent.objects.filter(app__in=integration.apps.all())
        .order_by("-timestamp", "-id")
        .values(*EVENT_FIELDS)
        .first()
    )
    return (event_message(row), True) if row else (SAMPLE_EVENT, False)


def _page(request, integration, form, *, kind, status=200):
    workspace = integration.workspace if integration else form.workspace
    context = {
        "workspace": workspace,
        "integration": integration,
        "kind": kind,
        "kind_label": connector_for(kind).label,
        "form": form,
        "active_tab": "integrations",
    }
    if integration is not None:
        test_result = request.session.pop(TEST_RESULT, None)
        context.update(
            masked_secret=selectors.mask(integration.secret),
            test_result=test_result
            if test_result and test_result.get("integration") == integration.pk
            else None,
            subscriptions=integration.subscriptions.all(),
            backfills=integration.backfills.all()[:5],
            backfill_form=BackfillForm(items=_backfill_items(integration)),
            new_secret=request.session.pop(f"integrations:new_secret:{integration.pk}", ""),
        )
    return render(request, "integrations/destination_form.html", context, status=status)


@login_required
def destination_create(request: HttpRequest, slug: str, kind: str) -> HttpResponse:
    workspace = workspace_get_for_user(user=request.user, slug=slug)
    if kind not in DESTINATION_KINDS:
        raise Http404("No such destination kind.")
    form = DestinationForm(request.POST or None, workspace=workspace, kind=kind)
    form.workspace = workspace
    if request.method == "POST" and form.is_valid():
        try:
            integration = destination_save(workspace=workspace, **form.service_kwargs())
        except HubError as exc:
            form.add_error(None, str(exc))
        else:
            if kind == Integration.Kind.WEBHOOK and not form.cleaned_data["secret"]:
                # Shown once, on the next page, to copy into the receiver.
                request.session[f"integrations:new_secret:{integration.pk}"] = integration.secret
            messages.success(
                request, f"{integration.get_kind_display()} destination “{integration.name}” saved."
            )
            return redirect("destination_edit", slug=workspace.slug, destination_id=integration.pk)
    return _page(request, None, form, kind=kind)


@login_required
def destination_edit(request: HttpRequest, slug: str, destination_id: int) -> HttpResponse:
    integration = _destination(request, slug, destination_id)
    workspace = integration.workspace
    form = DestinationForm(
        request.POST or None, workspace=workspace, kind=integration.kind, integration=integration
    )
    if request.method == "POST" and form.is_valid():
        try:
            destination_save(workspace=workspace, integration=integration, **form.service_kwargs())
        except HubError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Destination “{integration.name}” saved.")
            return redirect("destination_edit", slug=workspace.slug, destination_id=integration.pk)
    return _page(request, integration, form, kind=integration.kind)


@login_required
@require_POST
def destination_rotation_end(request: HttpRequest, slug: str, destination_id: int) -> HttpResponse:
    integration = _destination(request, slug, destination_id)
    webhook_rotation_end(integration=integration)
    messages.success(request, "Only the new secret signs from now on.")
    return redirect("destination_edit", slug=integration.workspace.slug, destination_id=integration.pk)


@login_required
def subscription_edit(
    request: HttpRequest, slug: str, destination_id: int, subscription_id: int
) -> HttpResponse:
    integration = _subscribable(request, slug, destination_id)
    subscription = integration.subscriptions.filter(pk=subscription_id).first()
    if subscription is None:
        raise Http404("No such subscription.")
    initial = {
        "name": subscription.name, "trigger": subscription.trigger, "enabled": subscription.enabled,
        "fields": orjson.dumps(subscription.fields, option=orjson.OPT_INDENT_2).decode(),
    }  # fmt: skip
    form = SubscriptionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            subscription_save(
                integration=integration, subscription=subscription, name=data["name"],
                action=subscription.action, trigger=data["trigger"], fields=data["fields"],
                enabled=data["enabled"],
            )  # fmt: skip
        except HubError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request, f"Subscription “{subscription.name}” saved: it applies to events from now on."
            )
            return redirect(_settings_url(integration))
    event, real = sample_event(integration)
    action = connector_for(integration.kind).actions.get(subscription.action)
    return render(
        request,
        "integrations/subscription_form.html",
        {
            "workspace": integration.workspace,
            "integration": integration,
            "subscription": subscription,
            "form": form,
            "action": action,
            "sample": orjson.dumps(event, option=orjson.OPT_INDENT_2).decode(),
            "sample_is_real": real,
            "settings_url": _settings_url(integration),
            "active_tab": "integrations",
        },
    )


def preview(integration: Integration, *, trigger: str, fields, event: dict, action_name: str) -> dict:
    """What a subscription would make of `event`: whether the trigger matches, the mapped values,
    and the message as it would be stored and sent (or the errors)."""
    candidate = Subscription(
        integration=integration, name="preview", action=action_name, trigger=trigger, fields=fields
    )
    try:
        compiled = subscription_compile(candidate)
    except TriggerError as exc:
        return {"ok": False, "errors": [f"Trigger: {exc}"]}
    except MappingError as exc:
        return {"ok": False, "errors": [f"Mapping: {exc}"]}
    if not compiled.trigger(event):
        return {"ok": True, "matched": False}
    connector = connector_for(integration.kind)
    values = mapping_values(compiled, event)
    try:
        message = connector.action_message(
            integration=integration, action=connector.actions[action_name], values=values
        )
    except MessageRefused as exc:
        return {"ok": False, "matched": True, "values": values, "errors": [f"Not sent: {exc}"]}
    return {"ok": True, "matched": True, "values": values, "message": message}


@login_required
@require_POST
def subscription_preview(
    request: HttpRequest, slug: str, destination_id: int, subscription_id: int
) -> JsonResponse:
    integration = _subscribable(request, slug, destination_id)
    subscription = integration.subscriptions.filter(pk=subscription_id).first()
    if subscription is None:
        raise Http404("No such subscription.")
    try:
        fields = orjson.loads(request.POST.get("fields", ""))
        event = orjson.loads(request.POST.get("event", ""))
    except orjson.JSONDecodeError as exc:
        return JsonResponse({"ok": False, "errors": [f"Not valid JSON: {exc}"]})
    if not isinstance(fields, dict) or not isinstance(event, dict):
        return JsonResponse({"ok": False, "errors": ["The mapping and the event are JSON objects."]})
    result = preview(
        integration,
        trigger=request.POST.get("trigger", ""),
        fields=fields,
        event=event,
        action_name=subscription.action,
    )
    return JsonResponse(result, json_dumps_params={"default": str})


def _backfill_items(integration: Integration) -> list[str]:
    """What a backfill of the destination can send: what its enabled subscriptions take."""
    kinds = set(integration.subscriptions.filter(enabled=True).values_list("item_kind", flat=True))
    items = [Backfill.Items.USAGE_EVENTS] if Subscription.ItemKind.USAGE_EVENT in kinds else []
    if kinds & {Subscription.ItemKind.CUSTOMER, Subscription.ItemKind.CONTACT}:
        items.append(Backfill.Items.CUSTOMERS)
    return items


@login_required
@require_POST
def destination_backfill(request: HttpRequest, slug: str, destination_id: int) -> HttpResponse:
    integration = _destination(request, slug, destination_id)
    if request.POST.get("cancel"):
        backfill = integration.backfills.filter(pk=request.POST["cancel"]).first()
        if backfill is not None:
            backfill_cancel(backfill=backfill)
            messages.success(request, "Backfill cancelled.")
    else:
        form = BackfillForm(request.POST, items=_backfill_items(integration))
        if not form.is_valid():
            messages.error(request, "Choose what to send and the range's start and end.")
        else:
            try:
                data = form.cleaned_data
                backfill = backfill_start(
                    integration=integration, since=data["since"], until=data["until"],
                    by=request.user.get_username(), items=data["items"],
                )  # fmt: skip
            except HubError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Backfill of {backfill.total} {backfill.noun} started.")
    return redirect("destination_edit", slug=integration.workspace.slug, destination_id=integration.pk)
