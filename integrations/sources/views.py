"""Screens of the sources: the list, a source's URLs and keys with its mappings, and the debugger of
received messages (the mapping editor is in `mapping_views.py`)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from hub.errors import HubError
from hub.selectors import app_get_for_user

from . import selectors, services
from .models import Source
from .presets import PRESETS


def sources_context(app, **extra) -> dict:
    """What every screen of the sources renders with (the mapping editor's too)."""
    return {"workspace": app.workspace, "app": app, "active_tab": "sources", **extra}


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@login_required
def sources(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    if request.method == "POST":
        try:
            source = services.source_create(
                app=app,
                name=request.POST.get("name", ""),
                shared_secret=request.POST.get("shared_secret", ""),
            )
        except HubError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Source “{source.name}” created.")
            return redirect("source_detail", app_id=app.public_id, source_id=source.public_id)
    return render(
        request, "sources/sources.html", sources_context(app, sources=selectors.sources_for_app(app=app))
    )


@login_required
def source_detail(request: HttpRequest, app_id: str, source_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    if request.method == "POST":
        try:
            _source_post(request, source)
        except HubError as exc:
            messages.error(request, str(exc))
        return redirect("source_detail", app_id=app.public_id, source_id=source.public_id)
    base = _base_url(request)
    return render(
        request,
        "sources/source_detail.html",
        sources_context(
            app,
            source=source,
            mappings=source.mappings.all(),
            presets=PRESETS.values(),
            urls={
                "tracking": f"{base}/segment",
                "webhook": (
                    f"{base}{reverse('source_webhook', args=[source.webhook_token])}"
                    if source.is_segment
                    else ""
                ),
                "metronome": f"{base}/metronome",
                "kable": f"{base}/kable",
                "mantle": f"{base}/v1",
            },
        ),
    )


def _source_post(request: HttpRequest, source: Source) -> None:
    what = request.POST.get("do")
    if what == "secret":
        services.source_update(source=source, shared_secret=request.POST.get("shared_secret", ""))
        messages.success(
            request, "Shared secret saved." if source.shared_secret else "Shared secret removed."
        )
    elif what == "rotate_write_key":
        services.source_rotate_credentials(source=source, write_key=True)
        messages.success(request, "New write key made; the old one is refused.")
    elif what == "rotate_webhook":
        services.source_rotate_credentials(source=source, write_key=False, webhook_token=True)
        messages.success(request, "New webhook URL made; the old one is refused.")
    elif what == "preset":
        mapping = services.mapping_from_preset(source=source, key=request.POST.get("preset", ""))
        messages.success(request, f"Mapping “{mapping.name}” added.")
    elif what == "toggle":
        mapping = selectors.mapping_get(source=source, mapping_id=int(request.POST.get("mapping", 0) or 0))
        services.mapping_save(
            source=source, mapping=mapping, name=mapping.name, trigger=mapping.trigger,
            action=mapping.action, fields=mapping.fields, enabled=not mapping.enabled,
        )  # fmt: skip
    else:
        raise HubError("Unknown request.")


# --- Debugger -----------------------------------------------------------------------------------


@login_required
def debugger(request: HttpRequest, app_id: str, source_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    return render(
        request,
        "sources/debugger.html",
        sources_context(app, source=source, rows=_debugger_rows(source)),
    )


def _debugger_rows(source: Source) -> list[dict]:
    """The latest messages with their payloads as the debugger opens them (pretty JSON)."""
    return [
        {"message": m, "payload": json.dumps(m.payload, indent=2, ensure_ascii=False, default=str)}
        for m in selectors.inbox_latest(source=source)
    ]


@login_required
def debugger_rows(request: HttpRequest, app_id: str, source_id: str) -> HttpResponse:
    """The debugger's table body, fetched by the page every few seconds."""
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    return render(request, "sources/_debugger_rows.html", {"rows": _debugger_rows(source)})
