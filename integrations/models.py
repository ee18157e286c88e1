"""Outbound integrations, and a row per delivery and per attempt (what the screens, the retries
and the tests all read)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from hub.crypto import EncryptedTextField
from hub.models import Activity, App, Workspace


class Integration(models.Model):
    """An outbound destination of a workspace (Segment today): its credentials and what it gets."""

    class Kind(models.TextChoices):
        SEGMENT = "segment", "Segment"
        METRONOME = "metronome", "Metronome"
        KABLE = "kable", "Kable"
        WEBHOOK = "webhook", "Webhook"
        CHARTMOGUL = "chartmogul", "ChartMogul"
        MANTLE = "mantle", "Mantle"

    class Region(models.TextChoices):
        US = "us", "US (api.segment.io)"
        EU = "eu", "EU (events.eu1.segmentapis.com)"
        CUSTOM = "custom", "Custom host"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SEGMENT)
    name = models.CharField(max_length=100)
    write_key = EncryptedTextField(blank=True, default="")
    # The destination's credential for the other kinds (Metronome's token, Kable's client secret,
    # a webhook's whsec_ signing secret), and the previous one while a webhook secret rotates.
    secret = EncryptedTextField(blank=True, default="")
    previous_secret = EncryptedTextField(blank=True, default="")
    region = models.CharField(max_length=10, choices=Region.choices, default=Region.US)
    custom_host = models.URLField(max_length=300, blank=True, default="")
    apps = models.ManyToManyField(App, blank=True, related_name="integrations")
    # Activity kinds (hub.models.Activity.Kind values) to send.
    activities = models.JSONField(default=list, blank=True)
    # A key of Customer.custom_fields to send as the userId instead of the customer id.
    user_id_field = models.CharField(max_length=100, blank=True, default="")
    enabled = models.BooleanField(default=True)
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=300, blank=True, default="")
    # Non-secret settings of the destination kind (client ids, headers, batch mode...).
    config = models.JSONField(default=dict, blank=True)
    # The circuit: set while the destination fails retryably. Only one small probe request goes out
    # at a time, at `probe_at`; its first success makes every waiting delivery due at once.
    outage_since = models.DateTimeField(null=True, blank=True)
    outage_error = models.CharField(max_length=300, blank=True, default="")
    probe_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="integration_unique_name"),
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=["segment", "metronome", "kable", "webhook", "chartmogul", "mantle"]
                ),
                name="integration_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(region__in=["us", "eu", "custom"]), name="integration_region_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Delivery(models.Model):
    """One item (an activity, a usage event, a customer, a test message) to one integration.

    The message is rendered once, at fan-out, from the data as it was when the item happened, and
    stored here as the exact JSON bytes every attempt sends under the same `message_id` (Segment's
    messageId, a transaction id, a webhook id). `next_attempt_at` is when the sender may try it
    next (pending only); the schedule lives here, in PostgreSQL, never as a broker ETA.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"

    class ItemKind(models.TextChoices):
        ACTIVITY = "activity", "Activity"
        USAGE_EVENT = "usage_event", "Usage event"
        CUSTOMER = "customer", "Customer"
        CONTACT = "contact", "Contact"
        TEST = "test", "Test message"

    # Derived from (integration, message_id) for fanned-out items (`delivery_store.delivery_id_for`),
    # so the primary key is also what keeps one message from becoming two deliveries.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the indexes it leads. Deleted with its integration by the ORM's cascade; no
    # database constraint, whose check would run once per inserted row on the hot path.
    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="deliveries", db_index=False, db_constraint=False
    )
    # Where the message came from (the log's customer and kind). The message itself is stored, so
    # a delivery outlives its activity: no constraint, no index on the hot path.
    activity = models.ForeignKey(
        Activity,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="deliveries",
    )
    item_kind = models.CharField(max_length=20, choices=ItemKind.choices, default=ItemKind.ACTIVITY)
    item_id = models.CharField(max_length=64, blank=True, default="")
    action = models.CharField(max_length=40, blank=True, default="")
    message_id = models.CharField(max_length=100)
    message = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The retry window counts from here (creation, or the last manual retry or replay).
    retry_window_start = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # The last request that carried it (attempts are pruned on their own schedule: no constraint).
    last_attempt = models.ForeignKey(
        "Attempt",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    replay = models.ForeignKey(
        "Replay", null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries", db_index=False
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "delivered", "failed", "dead"]),
                name="delivery_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["integration", "next_attempt_at"],
                condition=models.Q(status="pending"),
                name="delivery_due",
            ),
            models.Index(fields=["integration", "-created_at"], name="delivery_integration_created"),
            models.Index(
                fields=["integration", "-created_at"],
                condition=models.Q(status__in=["failed", "dead"]),
                name="delivery_integration_problems",
            ),
            models.Index(fields=["replay"], condition=models.Q(replay__isnull=False), name="delivery_replay"),
        ]

    def __str__(self) -> str:
        return f"{self.id} → {self.integration_id} ({self.status})"


class Attempt(models.Model):
    """One request to a destination, carrying one or more deliveries (a batch): `delivery_ids`."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        RETRY = "retry", "Will retry"
        FAILED = "failed", "Failed"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="attempts")
    # The deliveries this request carried (ids as text): one row per request, no link rows.
    delivery_ids = models.JSONField(default=list, blank=True)
    # A probe: one small request sent while the destination was failing (the circuit half-open).
    probe = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    url = models.CharField(max_length=300)
    message_count = models.PositiveIntegerField(default=0)
    request_bytes = models.PositiveIntegerField(default=0)
    # The request as sent: its headers (secrets masked) and body, up to a stated excerpt length.
    request_headers = models.JSONField(default=dict, blank=True)
    request_excerpt = models.TextField(blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["integration", "-created_at"], name="attempt_integration_created")]

    def __str__(self) -> str:
        return f"{self.url} {self.status_code or self.error[:40]}"


class Replay(models.Model):
    """A replay of an integration's failed and dead deliveries in a time range (progress = its rows)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="replays")
    since = models.DateTimeField()
    until = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Replay of {self.integration} {self.since:%Y-%m-%d %H:%M}–{self.until:%Y-%m-%d %H:%M}"


class Subscription(models.Model):
    """What a destination gets of its apps' data, and how it is shaped: items of one kind (usage
    events today) matching a trigger (the sources' FQL) become messages through a mapping (the
    sources' value specs) for one of the connector's actions (Metronome's sendEvent...)."""

    class ItemKind(models.TextChoices):
        USAGE_EVENT = "usage_event", "Usage events"
        CUSTOMER = "customer", "Customers"
        CONTACT = "contact", "Contacts"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="subscriptions")
    name = models.CharField(max_length=100)
    item_kind = models.CharField(max_length=20, choices=ItemKind.choices, default=ItemKind.USAGE_EVENT)
    action = models.CharField(max_length=40)
    trigger = models.TextField(default='type = "track"')
    fields = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["integration", "name"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "name"], name="subscription_unique_name"),
            models.CheckConstraint(
                condition=models.Q(item_kind__in=["usage_event", "customer", "contact"]),
                name="subscription_item_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.action})"


class Backfill(models.Model):
    """Stored usage events, or customers (and their contacts), of a time range sent to a
    destination after the fact (a background job).

    The job walks the destination's apps' events in (app, timestamp, id) order, or their customers
    in (app, id) order; each chunk's deliveries and the cursor past it commit together, so a killed
    worker's chunk is simply done again, and a delivery's id (from the subscription and the event,
    or the customer's version) keeps an item that was sent already, or twice by a resumed chunk,
    from becoming a second delivery.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    class Items(models.TextChoices):
        USAGE_EVENTS = "usage_events", "Usage events"
        CUSTOMERS = "customers", "Customers and contacts"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="backfills")
    items = models.CharField(max_length=20, choices=Items.choices, default=Items.USAGE_EVENTS)
    since = models.DateTimeField()
    until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0)  # events (customers) in the range when it started
    done = models.PositiveIntegerField(default=0)  # events (customers) walked so far
    queued = models.PositiveIntegerField(default=0)  # deliveries it created
    cursor_app_id = models.BigIntegerField(default=0)
    cursor_timestamp = models.DateTimeField(null=True, blank=True)
    cursor_event_pk = models.BigIntegerField(default=0)  # the last event's (customer's) id
    created_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["running", "done", "cancelled"]), name="backfill_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(items__in=["usage_events", "customers"]), name="backfill_items_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Backfill of {self.integration} {self.since:%Y-%m-%d}–{self.until:%Y-%m-%d}"

    @property
    def noun(self) -> str:
        """What `total` and `done` count."""
        return "customers" if self.items == self.Items.CUSTOMERS else "events"

    @property
    def percent(self) -> int:
        """How much of the range was walked, in percent (for the progress bar)."""
        if self.status == self.Status.DONE or not self.total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, 100 * self.done // self.total)
