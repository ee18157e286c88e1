"""Web screens of the core: workspace home, apps and the app's Settings page with its API keys."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_POST

from . import selectors
from .errors import HubError
from .forms import ApiKeyForm, AppForm, WorkspaceForm
from .services import accounts

_NEW_KEY_SESSION = "hub:new_api_key"


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, asked for by browsers on pages without an icon link (the admin, API docs)."""
    return HttpResponsePermanentRedirect(static("hub/favicon.svg"))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    workspace = selectors.workspaces_for_user(user=request.user).first()
    if workspace is None:
        return redirect("workspace_create")
    return redirect("workspace_home", slug=workspace.slug)


@login_required
def workspace_create(request: HttpRequest) -> HttpResponse:
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            workspace = accounts.workspace_create(name=form.cleaned_data["name"], owner=request.user)
        except HubError as exc:
            form.add_error("name", str(exc))
        else:
            return redirect("workspace_home", slug=workspace.slug)
    return render(request, "hub/workspace_create.html", {"form": form})


@login_required
def workspace_home(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    return render(
        request,
        "hub/workspace_home.html",
        {
            "workspace": workspace,
            "apps": selectors.apps_for_workspace(workspace=workspace),
            "role": selectors.membership_role(user=request.user, workspace=workspace),
        },
    )


@login_required
def app_create(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    form = AppForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            app = accounts.app_create(workspace=workspace, name=form.cleaned_data["name"])
        except HubError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"App “{app.name}” created.")
            return redirect("app_settings", app_id=app.public_id)
    return render(request, "hub/app_create.html", {"workspace": workspace, "form": form})


@login_required
def app_settings(request: HttpRequest, app_id: str) -> HttpResponse:
    app = selectors.app_get_for_user(user=request.user, public_id=app_id)
    new_key = request.session.pop(_NEW_KEY_SESSION, None)
    if new_key and new_key.get("app") != str(app.public_id):
        new_key = None
    return render(
        request,
        "hub/app_settings.html",
        {
            "workspace": app.workspace,
            "app": app,
            "api_keys": selectors.api_keys_for_app(app=app),
            "new_key": new_key,
            "key_form": ApiKeyForm(),
            "active_tab": "settings",
        },
    )


@login_required
@require_POST
def api_key_create(request: HttpRequest, app_id: str) -> HttpResponse:
    app = selectors.app_get_for_user(user=request.user, public_id=app_id)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the key a name of at most 100 characters.")
        return redirect("app_settings", app_id=app.public_id)
    try:
        api_key, secret = accounts.api_key_create(
            app=app, name=form.cleaned_data["name"], created_by=request.user
        )
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("app_settings", app_id=app.public_id)
    # Shown once: kept in the session only until the next page view pops it.
    request.session[_NEW_KEY_SESSION] = {
        "app": str(app.public_id),
        "id": api_key.pk,
        "name": api_key.name,
        "secret": secret,
    }
    return redirect("app_settings", app_id=app.public_id)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, app_id: str, key_id: int) -> HttpResponse:
    app = selectors.app_get_for_user(user=request.user, public_id=app_id)
    api_key = get_object_or_404(selectors.api_keys_for_app(app=app), pk=key_id)
    accounts.api_key_revoke(api_key=api_key)
    messages.success(request, f"API key “{api_key.name}” revoked.")
    return redirect("app_settings", app_id=app.public_id)
