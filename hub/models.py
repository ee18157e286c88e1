"""The core domain: workspaces (accounts), their members, apps and the apps' API keys."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from .crypto import EncryptedTextField


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Workspace(TimeStampedModel):
    """An account: the unit of tenancy. Everything else belongs to one workspace."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=110, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a workspace."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "member"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"


class App(TimeStampedModel):
    """An app of a workspace; `public_id` is what clients send as `X-Mantle-App-Id`."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=100)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="app_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A server-side key of one app. Only a SHA-256 hash of the whole key is stored.

    A key reads `<type prefix><lookup id>_<secret>`; `prefix` is everything before the last
    underscore and finds the row, the hash is then compared in constant time.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=64, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Customer(TimeStampedModel):
    """A customer (a shop, an account) of one app.

    Created by identify, or as a placeholder by a usage event naming a customer not identified
    yet; a later identify matching its platform id or myshopify domain fills it in. The API token
    is stored twice: a SHA-256 hash to find the customer by token, and encrypted so identify can
    return it again; neither reveals a usable token from a copy of the database alone.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="customers")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    platform = models.CharField(max_length=50, default="shopify")
    # NULL, not "", when unknown: the partial unique constraints below skip NULLs.
    platform_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    myshopify_domain = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    name = models.CharField(max_length=255, blank=True, default="")
    email = models.CharField(max_length=255, blank=True, default="")
    platform_plan_name = models.CharField(max_length=255, blank=True, default="")
    custom_fields = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    platform_created_at = models.DateTimeField(null=True, blank=True)
    is_placeholder = models.BooleanField(default=False)
    identified_at = models.DateTimeField(null=True, blank=True)
    api_token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    api_token = EncryptedTextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "platform", "platform_id"],
                condition=models.Q(platform_id__isnull=False),
                name="customer_unique_platform_id",
            ),
            models.UniqueConstraint(
                fields=["app", "myshopify_domain"],
                condition=models.Q(myshopify_domain__isnull=False),
                name="customer_unique_myshopify_domain",
            ),
        ]
        indexes = [models.Index(fields=["app", "-created_at"], name="customer_app_created")]

    def __str__(self) -> str:
        return self.name or self.myshopify_domain or self.platform_id or str(self.public_id)


class Contact(TimeStampedModel):
    """A person at a customer, upserted by email."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    email = models.CharField(max_length=255)
    label = models.CharField(max_length=100, blank=True, default="")
    name = models.CharField(max_length=255, blank=True, default="")
    phone = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "email"], name="contact_unique_email"),
        ]

    def __str__(self) -> str:
        return self.email
