"""Read paths of the core, each scoped to what the caller may see."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, App, Membership, Workspace


def workspaces_for_user(*, user: AbstractBaseUser) -> QuerySet[Workspace]:
    """Workspaces the user is a member of."""
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def workspace_get_for_user(*, user: AbstractBaseUser, slug: str) -> Workspace:
    """The workspace with `slug` if the user is a member, else Http404."""
    workspace = workspaces_for_user(user=user).filter(slug=slug).first()
    if workspace is None:
        raise Http404("No such workspace.")
    return workspace


def membership_role(*, user: AbstractBaseUser, workspace: Workspace) -> str | None:
    return Membership.objects.filter(user=user, workspace=workspace).values_list("role", flat=True).first()


def apps_for_workspace(*, workspace: Workspace) -> QuerySet[App]:
    return workspace.apps.order_by("name")


def app_get_for_user(*, user: AbstractBaseUser, public_id: str | uuid.UUID) -> App:
    """The app with this public id if the user belongs to its workspace, else Http404."""
    try:
        public_id = uuid.UUID(str(public_id))
    except ValueError:
        raise Http404("No such app.") from None
    app = (
        App.objects.select_related("workspace")
        .filter(public_id=public_id, workspace__memberships__user=user)
        .first()
    )
    if app is None:
        raise Http404("No such app.")
    return app


def api_keys_for_app(*, app: App) -> QuerySet[ApiKey]:
    """The app's keys, active first, newest first."""
    return app.api_keys.select_related("created_by").order_by("revoked_at", "-created_at")
