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


class Invitation(models.Model):
    """A one-time link to join a workspace with a role, or for a member to set a first password.

    Only the token's SHA-256 is stored; the link is shown once to the owner who made it (and mailed
    when a mail server is configured). Accepting it marks it used.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "member"]), name="invitation_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.workspace} ({self.role})"


class App(TimeStampedModel):
    """An app of a workspace; `public_id` is what clients send as `X-Mantle-App-Id`."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=100)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Whether a destination subscribes to this app's usage events: read by the statement that
    # stores events (so no process acts on a stale copy), kept by the integrations' services.
    forward_usage_events = models.BooleanField(default=False, editable=False)
    # The same for customers and contacts (their changes leave a CustomerForward row).
    forward_customers = models.BooleanField(default=False, editable=False)

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

    # Indexed by customer_app_created (app first): an index of the app alone would be one more write
    # per customer, and one the planner may take for a lookup by platform id
    # (hub.services.customers._matching_sql).
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="customers", db_index=False)
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
    # Unique by a constraint, not `unique=True`: that adds a second index for LIKE, never used here.
    # NULL, not "", until a token is made: the unique constraint skips NULLs.
    api_token_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    api_token = EncryptedTextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ["-created_at"]
        # The platform id and the domain lead their indexes: a lookup by either finds its row
        # whatever the planner believes of the app's size (hub.services.customers._matching_sql).
        constraints = [
            models.UniqueConstraint(
                fields=["platform_id", "platform", "app"],
                condition=models.Q(platform_id__isnull=False),
                name="customer_unique_platform_id",
            ),
            models.UniqueConstraint(
                fields=["myshopify_domain", "app"],
                condition=models.Q(myshopify_domain__isnull=False),
                name="customer_unique_myshopify_domain",
            ),
            models.UniqueConstraint(fields=["api_token_hash"], name="customer_unique_api_token_hash"),
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


# --- Lifecycle: plans, installations, subscriptions, reviews and the Activity outbox -------------


class Plan(TimeStampedModel):
    """A plan of one app; upgrades and downgrades are told apart by `amount`."""

    class Interval(models.TextChoices):
        EVERY_30_DAYS = "EVERY_30_DAYS", "Every 30 days"
        ANNUAL = "ANNUAL", "Annual"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="plans")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="USD")
    interval = models.CharField(max_length=20, choices=Interval.choices, default=Interval.EVERY_30_DAYS)
    # An archived plan takes no new subscriptions; the ones it has keep running.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["amount", "name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="plan_unique_name"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="plan_amount_not_negative"),
            models.CheckConstraint(
                condition=models.Q(interval__in=["EVERY_30_DAYS", "ANNUAL"]), name="plan_interval_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.amount} {self.currency})"


class Installation(TimeStampedModel):
    """A customer's installation of the app: one row per customer, its state changed by services."""

    class Status(models.TextChoices):
        INSTALLED = "installed", "Installed"
        UNINSTALLED = "uninstalled", "Uninstalled"
        FROZEN = "frozen", "Frozen"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="installations")
    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="installation")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.INSTALLED)
    installed_at = models.DateTimeField(default=timezone.now)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-installed_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["installed", "uninstalled", "frozen"]),
                name="installation_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer} ({self.status})"


class Subscription(TimeStampedModel):
    """A customer's subscription to a plan; at most one open (active or frozen) per customer."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FROZEN = "frozen", "Frozen"
        CANCELLED = "cancelled", "Cancelled"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="subscriptions")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    activated_at = models.DateTimeField(default=timezone.now)
    frozen_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=255, blank=True, default="")
    capped_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["-activated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=models.Q(status__in=["active", "frozen"]),
                name="subscription_one_open_per_customer",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "frozen", "cancelled"]),
                name="subscription_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer} on {self.plan.name} ({self.status})"


class Review(models.Model):
    """A customer's review of the app."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="reviews")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer}: {self.rating}/5"


class Activity(models.Model):
    """A lifecycle change, recorded in the transaction that made it: what to send out.

    `id` is the Segment messageId on every retry. Each new row is queued in `ActivityOutbox` by
    the database itself (a trigger, in the same statement), until the integrations package has
    created its deliveries; what stays queued is picked up by its sweep.
    """

    class Kind(models.TextChoices):
        INSTALLED = "installed", "Customer installed app"
        UNINSTALLED = "uninstalled", "Customer uninstalled app"
        INSTALLATION_FROZEN = "installation_frozen", "Customer installation was deactivated/frozen"
        INSTALLATION_REACTIVATED = "installation_reactivated", "Customer installation was reactivated"
        REVIEWED = "reviewed", "Customer reviewed app"
        SUBSCRIBED = "subscribed", "Customer subscribed to plan"
        UNSUBSCRIBED = "unsubscribed", "Customer unsubscribed from plan"
        UPGRADED = "upgraded", "Customer upgraded plan"
        DOWNGRADED = "downgraded", "Customer downgraded plan"
        PLAN_CHANGED = "plan_changed", "Customer changed plan"
        SUBSCRIPTION_FROZEN = "subscription_frozen", "Subscription was frozen"
        SUBSCRIPTION_UNFROZEN = "subscription_unfrozen", "Subscription was unfrozen"
        USAGE_LIMIT_APPROACHING = "usage_limit_approaching", "Customer's usage is approaching a plan limit"
        USAGE_LIMIT_REACHED = "usage_limit_reached", "Customer's usage reached a plan limit"
        UPGRADE_SUGGESTED = "upgrade_suggested", "Upgrade suggested by usage"

    APP_KINDS = ("installed", "uninstalled", "installation_frozen", "installation_reactivated", "reviewed")
    SUBSCRIPTION_KINDS = (
        "subscribed",
        "unsubscribed",
        "upgraded",
        "downgraded",
        "plan_changed",
        "subscription_frozen",
        "subscription_unfrozen",
    )
    # The eleven activities of seed 000 (a change to an equally priced plan is neither an upgrade
    # nor a downgrade: `plan_changed`).
    SEED_KINDS = (*APP_KINDS, *(k for k in SUBSCRIPTION_KINDS if k != "plan_changed"))
    USAGE_KINDS = ("usage_limit_approaching", "usage_limit_reached", "upgrade_suggested")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: `activity_app_occurred` leads with it (an index is one more write per
    # activity recorded).
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="activities", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    properties = models.JSONField(default=dict, blank=True)
    # The customer's custom fields as they were when it happened (what a destination's userId may
    # come from), so a message rendered later is the message of that moment.
    customer_fields = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name_plural = "activities"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=[
                        "installed",
                        "uninstalled",
                        "installation_frozen",
                        "installation_reactivated",
                        "reviewed",
                        "subscribed",
                        "unsubscribed",
                        "upgraded",
                        "downgraded",
                        "plan_changed",
                        "subscription_frozen",
                        "subscription_unfrozen",
                        "usage_limit_approaching",
                        "usage_limit_reached",
                        "upgrade_suggested",
                    ]
                ),
                name="activity_kind_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["app", "-occurred_at"], name="activity_app_occurred"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.occurred_at:%Y-%m-%d %H:%M})"


class ActivityOutbox(models.Model):
    """An activity whose deliveries are not created yet: the fan-out's queue.

    A row is inserted with each activity by a trigger on `hub_activity` (migration 0012), so every
    way of recording one (the lifecycle services, identify's one-statement insert, a bulk insert)
    queues it in the same statement and transaction. The fan-out claims rows by deleting them
    (`DELETE ... RETURNING`, `FOR UPDATE SKIP LOCKED`) in the transaction that inserts the
    deliveries: a crash before its commit leaves them queued. A claim writes nothing to
    `hub_activity`: marking the activities themselves dispatched rewrote each row and every index
    on it, the fan-out's largest cost in PostgreSQL. `id` orders the queue (oldest first).
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraint: its check would lock the activity's row (a write to it) for each
    # row queued, and the trigger inserts the id of the row being inserted. Deleting an activity
    # through the ORM deletes its row here; a row left without its activity is dropped by the claim.
    activity = models.OneToOneField(
        Activity, on_delete=models.CASCADE, related_name="outbox", db_constraint=False
    )

    class Meta:
        verbose_name_plural = "activity outbox"

    def __str__(self) -> str:
        return f"queued {self.activity_id}"


class CustomerForward(models.Model):
    """A customer or contact as it was right after a change, for the destinations subscribed to
    them: written in the transaction of the change (only for apps whose `forward_customers` is
    set) and deleted in the one that creates its deliveries (the integrations' forwarder)."""

    class Kind(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        CONTACT = "contact", "Contact"

    id = models.BigAutoField(primary_key=True)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    object_id = models.BigIntegerField()  # the Customer's or Contact's id
    snapshot = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "customer change to forward"

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} of app {self.app_id} to forward"
