"""Write paths of a workspace's members: invitations (one-time links), roles, removal, deletion.

Owners manage members and may delete the workspace; members may only leave. A workspace always
keeps at least one owner. An invitation's token is shown once (and mailed when EMAIL_HOST is set);
only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from ..errors import Conflict, HubError
from ..locks import app_usage_lock
from ..models import Invitation, Membership, Workspace

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class NotAllowed(HubError):
    """The caller's role does not allow this."""

    status_code = 403


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _role(workspace: Workspace, user: User) -> str | None:
    return Membership.objects.filter(workspace=workspace, user=user).values_list("role", flat=True).first()


def _require_owner(workspace: Workspace, by: User) -> None:
    if _role(workspace, by) != Membership.Role.OWNER:
        raise NotAllowed("Only the workspace's owners can do this.")


def _other_owners(workspace: Workspace, user: User) -> bool:
    owners = Membership.objects.select_for_update().filter(workspace=workspace, role=Membership.Role.OWNER)
    return any(m.user_id != user.pk for m in owners)


def invitation_create(
    *,
    workspace: Workspace,
    email: str,
    role: str,
    by: User,
    link_for: Callable[[str], str] | None = None,
) -> tuple[Invitation, str]:
    """Invite `email` to `workspace` with `role` (owners only); the invitation and its one-time token.

    For a member already in the workspace the link only sets a first password. When EMAIL_HOST is
    set, the link (`link_for(token)`) is mailed after commit.
    """
    _require_owner(workspace, by)
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254:
        raise HubError("Enter the email address to invite.")
    if role not in Membership.Role.values:
        raise HubError("The role is owner or member.")
    existing = Membership.objects.filter(workspace=workspace, user__email__iexact=email).select_related(
        "user"
    )
    member = existing.first()
    if member is not None and member.user.has_usable_password():
        raise Conflict(f"{email} is already a member of this workspace.")
    if member is not None:
        role = member.role  # a set-password link changes nothing else
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # A new link replaces the earlier ones for the same address.
        Invitation.objects.filter(
            workspace=workspace, email=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        invitation = Invitation.objects.create(
            workspace=workspace,
            email=email,
            role=role,
            token_hash=_hash(token),
            invited_by=by,
            expires_at=timezone.now() + timedelta(days=settings.HUB_INVITATION_DAYS),
        )
        if settings.EMAIL_HOST and link_for is not None:
            transaction.on_commit(lambda: _mail(invitation, link_for(token)))
    return invitation, token


def _mail(invitation: Invitation, link: str) -> None:
    try:
        send_mail(
            subject=f"Join {invitation.workspace.name} on the integration hub",
            message=(
                f"You are invited to the workspace {invitation.workspace.name} as {invitation.role}.\n\n"
                f"Open this link to set your password and join (valid {settings.HUB_INVITATION_DAYS} days, "
                f"once):\n{link}\n"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[invitation.email],
        )
    except OSError as exc:  # the link is on the screen anyway
        logger.warning("Invitation mail to workspace %s not sent: %s", invitation.workspace_id, exc)


def invitation_get(*, token: str) -> Invitation | None:
    """The open invitation of this token (not used, revoked or expired), or None."""
    if not token:
        return None
    return (
        Invitation.objects.select_related("workspace")
        .filter(
            token_hash=_hash(token),
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


def invitation_user(*, invitation: Invitation) -> User | None:
    """The user the invitation's address belongs to, if any."""
    return get_user_model().objects.filter(email__iexact=invitation.email).order_by("pk").first()


@transaction.atomic
def invitation_accept(
    *, invitation: Invitation, user: User | None = None, password: str | None = None
) -> tuple[User, Membership]:
    """Use the invitation: `user` (signed in as the invited address) joins, or, with `password`, the
    address's user is created or given its first password and joins. Once only."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.accepted_at or locked.revoked_at or locked.expires_at <= timezone.now():
        raise Conflict("This invitation link is no longer valid: ask an owner for a new one.")
    existing = invitation_user(invitation=locked)
    if user is None:
        if existing is not None and existing.has_usable_password():
            raise Conflict("This address already has a password: log in to accept the invitation.")
        if not password:
            raise HubError("Choose a password.")
        if existing is None:
            existing = get_user_model()(username=locked.email[:150], email=locked.email)
        existing.set_password(password)
        existing.save()
        user = existing
    elif (user.email or "").lower() != locked.email:
        raise NotAllowed(f"This invitation is for {locked.email}.")
    membership = Membership.objects.filter(workspace=locked.workspace, user=user).first()
    if membership is None:
        membership = Membership.objects.create(workspace=locked.workspace, user=user, role=locked.role)
    locked.accepted_at = timezone.now()
    locked.save(update_fields=["accepted_at"])
    return user, membership


def invitation_revoke(*, invitation: Invitation, by: User) -> None:
    """Make an open invitation's link useless (owners only)."""
    _require_owner(invitation.workspace, by)
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(revoked_at=timezone.now())


@transaction.atomic
def membership_role_change(*, membership: Membership, role: str, by: User) -> Membership:
    """Change a member's role (owners only); the last owner cannot become a member."""
    _require_owner(membership.workspace, by)
    if role not in Membership.Role.values:
        raise HubError("The role is owner or member.")
    if (
        membership.role == Membership.Role.OWNER
        and role != Membership.Role.OWNER
        and not _other_owners(membership.workspace, membership.user)
    ):
        raise Conflict("A workspace needs an owner: make someone else owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, by: User) -> None:
    """Remove a member (owners), or leave (anyone, for themself); never the last owner."""
    if membership.user_id != by.pk:
        _require_owner(membership.workspace, by)
    if membership.role == Membership.Role.OWNER and not _other_owners(membership.workspace, membership.user):
        raise Conflict("The last owner cannot be removed: make someone else owner first.")
    membership.delete()


def workspace_delete(*, workspace: Workspace, by: User, confirm: str) -> None:
    """Delete the workspace with its apps, data and integrations (owners only, its name typed)."""
    _require_owner(workspace, by)
    if (confirm or "").strip() != workspace.name:
        raise HubError("Type the workspace's name to delete it.")
    with transaction.atomic():
        # No usage event of its apps is being counted meanwhile (the rollup rows of a deleted
        # metric or customer would be left behind: their tables check no foreign key).
        for app_pk in workspace.apps.order_by("pk").values_list("pk", flat=True):
            app_usage_lock(app_pk)
        workspace.delete()
