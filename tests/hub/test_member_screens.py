"""Members of a workspace on screen: invite with a one-time link, set a password and join, change
roles, remove, the last owner kept, members' limits, and one's own password on the account page."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from hub.config_apply import config_apply
from hub.models import Invitation, Membership, Workspace
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-long-new-passphrase-42"


def _invite(client, workspace, email="new@example.com", role="member"):
    client.post(reverse("member_invite", args=[workspace.slug]), {"email": email, "role": role})
    page = client.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    return re.search(r'<code id="invitation-url" class="mono">([^<]+)</code>', page).group(1)


def test_an_owner_invites_and_the_link_sets_a_password_once(logged_in, workspace, client, settings):
    link = _invite(logged_in, workspace, role="owner")
    assert "/invite/" in link and not mail.outbox  # no mail server: the link is shown to copy
    assert (
        "new@example.com"
        in logged_in.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    )
    token_path = link.split("testserver", 1)[1]
    assert Invitation.objects.get().token_hash not in token_path  # only the hash is stored

    client.logout()
    response = client.post(token_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    user = get_user_model().objects.get(email="new@example.com")
    assert user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(workspace=workspace, user=user).role == "owner"
    assert client.get(token_path).status_code == 404  # once


def test_the_invitation_is_mailed_when_a_mail_server_is_configured(
    logged_in, workspace, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_HOST = "smtp.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        logged_in.post(
            reverse("member_invite", args=[workspace.slug]), {"email": "new@example.com", "role": "member"}
        )
    page = logged_in.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    link = re.search(r'id="invitation-url" class="mono">([^<]+)<', page).group(1)
    assert [m.to for m in mail.outbox] == [["new@example.com"]]
    assert link in mail.outbox[0].body and "It was also emailed" in page


def test_a_member_made_by_hub_apply_gets_a_set_password_link(logged_in, workspace, user, client):
    config_apply(document={"workspace": workspace.name, "members": [{"email": "ci@example.com"}]})
    page = logged_in.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    assert "No password yet" in page
    member = Membership.objects.get(workspace=workspace, user__email="ci@example.com")
    logged_in.post(reverse("member_password_link", args=[workspace.slug, member.pk]))
    page = logged_in.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    link = re.search(r'id="invitation-url" class="mono">([^<]+)<', page).group(1).split("testserver", 1)[1]
    client.logout()
    client.post(link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    member.user.refresh_from_db()
    assert member.user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(pk=member.pk).role == "member"


def test_roles_change_and_the_last_owner_stays(logged_in, workspace, user):
    own = Membership.objects.get(workspace=workspace, user=user)
    other = MembershipFactory(workspace=workspace, role="member")
    logged_in.post(reverse("member_role", args=[workspace.slug, own.pk]), {"role": "member"})
    assert Membership.objects.get(pk=own.pk).role == "owner"  # the last owner
    logged_in.post(reverse("member_remove", args=[workspace.slug, own.pk]))
    assert Membership.objects.filter(pk=own.pk).exists()
    logged_in.post(reverse("member_role", args=[workspace.slug, other.pk]), {"role": "owner"})
    assert Membership.objects.get(pk=other.pk).role == "owner"
    logged_in.post(reverse("member_role", args=[workspace.slug, own.pk]), {"role": "member"})
    assert Membership.objects.get(pk=own.pk).role == "member"


def test_a_member_cannot_manage_members_or_delete_the_workspace(client, workspace):
    owner = Membership.objects.get(workspace=workspace)
    member_user = UserFactory()
    member = MembershipFactory(workspace=workspace, user=member_user, role="member")
    client.force_login(member_user)
    page = client.get(reverse("workspace_members", args=[workspace.slug])).content.decode()
    assert "Invite member" not in page and "Delete workspace" not in page
    client.post(reverse("member_invite", args=[workspace.slug]), {"email": "x@example.com", "role": "owner"})
    assert not Invitation.objects.exists()
    client.post(reverse("member_role", args=[workspace.slug, member.pk]), {"role": "owner"})
    client.post(reverse("member_remove", args=[workspace.slug, owner.pk]))
    client.post(reverse("workspace_delete", args=[workspace.slug]), {"confirm": workspace.name})
    assert Membership.objects.get(pk=member.pk).role == "member"
    assert (
        Membership.objects.filter(pk=owner.pk).exists() and Workspace.objects.filter(pk=workspace.pk).exists()
    )
    client.post(reverse("member_remove", args=[workspace.slug, member.pk]))  # leaving is allowed
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_an_owner_deletes_the_workspace_by_typing_its_name(logged_in, workspace):
    logged_in.post(reverse("workspace_delete", args=[workspace.slug]), {"confirm": "wrong"})
    assert Workspace.objects.filter(pk=workspace.pk).exists()
    logged_in.post(reverse("workspace_delete", args=[workspace.slug]), {"confirm": workspace.name})
    assert not Workspace.objects.filter(pk=workspace.pk).exists()


def test_members_of_another_workspace_are_not_reachable(logged_in):
    other = MembershipFactory(role="owner")
    assert logged_in.get(reverse("workspace_members", args=[other.workspace.slug])).status_code == 404
    assert logged_in.post(reverse("member_remove", args=[other.workspace.slug, other.pk])).status_code == 404


def test_change_ones_own_password_on_the_account_page(logged_in, user):
    url = reverse("account")
    bad = logged_in.post(
        url, {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert bad.status_code == 400
    good = logged_in.post(
        url,
        {
            "old_password": "correct-horse-battery",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert good.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert logged_in.get(url).status_code == 200  # still signed in
