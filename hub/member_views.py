"""Screens of a workspace's members (list, invite, roles, remove, delete the workspace), the
invitation link's page, and the account page (one's own password)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import selectors
from .errors import HubError
from .forms import InviteForm, NewPasswordForm
from .models import Invitation, Membership
from .services import members

_NEW_LINK_SESSION = "hub:new_invitation_link"


def _members_page(request: HttpRequest, workspace, invite_form=None, status=200) -> HttpResponse:
    role = selectors.membership_role(user=request.user, workspace=workspace)
    link = request.session.pop(_NEW_LINK_SESSION, None)
    if link and link.get("workspace") != workspace.pk:
        link = None
    memberships = (
        Membership.objects.filter(workspace=workspace).select_related("user").order_by("-role", "user__email")
    )
    invitations = Invitation.objects.filter(
        workspace=workspace, accepted_at__isnull=True, revoked_at__isnull=True
    ).select_related("invited_by")
    return render(
        request,
        "hub/members.html",
        {
            "workspace": workspace,
            "role": role,
            "is_owner": role == Membership.Role.OWNER,
            "memberships": memberships,
            "invitations": invitations,
            "invite_form": invite_form or InviteForm(),
            "new_link": link,
            "mail_enabled": bool(settings.EMAIL_HOST),
            "invitation_days": settings.HUB_INVITATION_DAYS,
            "roles": Membership.Role.choices,
            "active_tab": "members",
        },
        status=status,
    )


@login_required
def workspace_members(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    return _members_page(request, workspace)


def _link(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("invitation_accept", args=[token]))


def _keep_link(request: HttpRequest, workspace, invitation: Invitation, token: str) -> None:
    # Shown once: kept in the session only until the next page view pops it.
    request.session[_NEW_LINK_SESSION] = {
        "workspace": workspace.pk,
        "email": invitation.email,
        "url": _link(request, token),
    }


@login_required
@require_POST
def member_invite(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    form = InviteForm(request.POST)
    if not form.is_valid():  # shown again with its errors, as Django's forms are
        return _members_page(request, workspace, invite_form=form)
    try:
        invitation, token = members.invitation_create(
            workspace=workspace,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            by=request.user,
            link_for=lambda token: _link(request, token),
        )
    except HubError as exc:
        form.add_error("email", str(exc))
        return _members_page(request, workspace, invite_form=form, status=exc.status_code)
    _keep_link(request, workspace, invitation, token)
    return redirect("workspace_members", slug=workspace.slug)


@login_required
@require_POST
def member_password_link(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    """A set-password link for a member who has none (made by hub_apply, say)."""
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), workspace=workspace, pk=membership_id
    )
    try:
        invitation, token = members.invitation_create(
            workspace=workspace, email=membership.user.email, role=membership.role, by=request.user
        )
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        _keep_link(request, workspace, invitation, token)
    return redirect("workspace_members", slug=workspace.slug)


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), workspace=workspace, pk=membership_id
    )
    try:
        members.membership_role_change(
            membership=membership, role=request.POST.get("role", ""), by=request.user
        )
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    return redirect("workspace_members", slug=workspace.slug)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), workspace=workspace, pk=membership_id
    )
    try:
        members.membership_remove(membership=membership, by=request.user)
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("workspace_members", slug=workspace.slug)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You left {workspace.name}.")
        return redirect("home")
    messages.success(request, f"{membership.user.email} removed from {workspace.name}.")
    return redirect("workspace_members", slug=workspace.slug)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    invitation = get_object_or_404(Invitation, workspace=workspace, pk=invitation_id)
    try:
        members.invitation_revoke(invitation=invitation, by=request.user)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("workspace_members", slug=workspace.slug)


@login_required
@require_POST
def workspace_delete(request: HttpRequest, slug: str) -> HttpResponse:
    workspace = selectors.workspace_get_for_user(user=request.user, slug=slug)
    try:
        members.workspace_delete(
            workspace=workspace, by=request.user, confirm=request.POST.get("confirm", "")
        )
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("workspace_members", slug=workspace.slug)
    messages.success(request, f"Workspace “{workspace.name}” deleted.")
    return redirect("home")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The one-time link: set a password and join, or (signed in as the address) join."""
    invitation = members.invitation_get(token=token)
    if invitation is None:
        return render(request, "hub/invitation.html", {"invalid": True}, status=404)
    invited = members.invitation_user(invitation=invitation)
    needs_password = invited is None or not invited.has_usable_password()
    signed_in_as_invited = (
        request.user.is_authenticated and (request.user.email or "").lower() == invitation.email
    )
    form = NewPasswordForm(request.POST or None, user=invited) if needs_password else None
    error = ""
    if request.method == "POST":
        try:
            if needs_password:
                if not form.is_valid():
                    raise HubError("")
                user, _ = members.invitation_accept(
                    invitation=invitation, password=form.cleaned_data["password1"]
                )
                login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
            elif signed_in_as_invited:
                members.invitation_accept(invitation=invitation, user=request.user)
            else:
                raise HubError(f"Log in as {invitation.email} to accept this invitation.")
        except HubError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Welcome to {invitation.workspace.name}.")
            return redirect("workspace_home", slug=invitation.workspace.slug)
    return render(
        request,
        "hub/invitation.html",
        {
            "invitation": invitation,
            "needs_password": needs_password,
            "signed_in_as_invited": signed_in_as_invited,
            "form": form,
            "error": error,
            "login_url": f"{reverse('login')}?next={request.path}",
        },
        status=400 if error else 200,
    )


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """One's own account: the email, the workspaces and roles, and a password change."""
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        update_session_auth_hash(request, form.user)  # stay signed in here, out everywhere else
        messages.success(request, "Password changed.")
        return redirect("account")
    return render(
        request,
        "hub/account.html",
        {
            "form": form,
            "memberships": Membership.objects.filter(user=request.user).select_related("workspace"),
            "active_tab": "account",
        },
        status=400 if request.method == "POST" else 200,
    )
