"""Sources of inbound messages, their mappings, and the inbox of every message received."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from hub.crypto import EncryptedTextField
from hub.models import App


class Source(models.Model):
    """Where an app receives messages from Segment (or a Segment library) and webhooks, or from the
    Metronome- and Kable-compatible endpoints.

    A Segment source's write key and webhook token are credentials: each is stored as a SHA-256 hash
    to find the source and encrypted so the screen can show it again. The shared secret signs
    webhooks. A `metronome` or `kable` source (one per app, made on its first request) has neither:
    its endpoint authenticates with an API key.
    """

    class Kind(models.TextChoices):
        SEGMENT = "segment", "Segment"
        METRONOME = "metronome", "Metronome-compatible"
        KABLE = "kable", "Kable-compatible"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="sources")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SEGMENT)
    # NULL (not "") for a source without them: unique allows many NULLs.
    write_key_hash = models.CharField(max_length=64, unique=True, null=True, editable=False)  # noqa: DJ001
    write_key = EncryptedTextField(blank=True, default="", editable=False)
    webhook_token_hash = models.CharField(max_length=64, unique=True, null=True, editable=False)  # noqa: DJ001
    webhook_token = EncryptedTextField(blank=True, default="", editable=False)
    shared_secret = EncryptedTextField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="source_unique_name"),
            models.CheckConstraint(
                condition=models.Q(kind__in=["segment", "metronome", "kable"]), name="source_kind_valid"
            ),
            # A Segment source has its credentials; a Metronome or Kable source is the app's only one.
            models.CheckConstraint(
                condition=~models.Q(kind="segment")
                | (models.Q(write_key_hash__isnull=False) & models.Q(webhook_token_hash__isnull=False)),
                name="source_segment_has_credentials",
            ),
            models.UniqueConstraint(
                fields=["app", "kind"],
                condition=models.Q(kind__in=["metronome", "kable"]),
                name="source_one_per_vendor_kind",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_segment(self) -> bool:
        return self.kind == self.Kind.SEGMENT


class Mapping(models.Model):
    """A rule of a source: when `trigger` matches a message, run `action` with the mapped fields.

    `fields` maps each target field of the action to a value: Segment's mapping-kit
    (`{"@path": "$.properties.shop"}`, `{"@if": ...}`, raw JSON) or one of the hub's specs
    (`{"path": "properties.shop"}`, `{"literal": ...}`, `{"template": "{{traits.name}}"}`); see
    integrations/sources/mapping_engine.py.
    """

    class Action(models.TextChoices):
        USAGE_EVENT = "usage_event", "Record usage event"
        CUSTOMER = "customer", "Upsert customer"
        CONTACT = "contact", "Upsert contact"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="mappings")
    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    trigger = models.TextField()
    action = models.CharField(max_length=20, choices=Action.choices)
    fields = models.JSONField(default=dict, blank=True)
    preset = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "name"], name="mapping_unique_name"),
            models.CheckConstraint(
                condition=models.Q(action__in=["usage_event", "customer", "contact"]),
                name="mapping_action_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class JSONTextField(models.JSONField):
    """A JSONField stored as PostgreSQL `json` (the text, checked) rather than `jsonb`: the inbox
    writes every message once and reads it back whole, never by key, and `json` skips building
    jsonb on the way in and printing it on the way out. (Its values load as text: see apps.py.)"""

    def db_type(self, connection):
        return "json" if connection.vendor == "postgresql" else super().db_type(connection)

    def from_db_value(self, value, expression, connection):
        if value is not None and not isinstance(value, str | bytes | bytearray):
            return value  # already decoded by the driver
        return super().from_db_value(value, expression, connection)


class InboxMessage(models.Model):
    """One message as received, committed before the sender got its 2xx; a worker processes it.

    `pending` rows wait in an `InboxBatch` (one per request) and are marked `processed` in the
    transaction that stored what their mappings produced and deleted their batch; `rejected` ones
    were invalid on receipt and are kept so the debugger can say why. The table leaves room on its
    pages (fillfactor, see migration 0004) so that marking a row processed is a HOT update, which
    writes no index: no indexed column changes.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        REJECTED = "rejected", "Rejected"

    class Outcome(models.TextChoices):
        NONE = "", "—"
        STORED = "stored", "Stored"
        DUPLICATE = "duplicate", "Duplicate"
        UNMATCHED = "unmatched", "No mapping matched"
        FAILED = "failed", "Mapping failed"
        REJECTED = "rejected", "Rejected"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: inbox_source_latest leads with it (each index costs every receipt).
    # No database constraint either (it was a check per row at every commit): a pending message
    # commits with its InboxBatch, whose constraint fails the receipt if the source went away,
    # and deleting a source deletes its messages (Django's cascade).
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="inbox", db_index=False, db_constraint=False
    )
    format = models.CharField(max_length=20)
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=30, blank=True, default="")
    event = models.CharField(max_length=255, blank=True, default="")
    payload = JSONTextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default="")
    error = models.TextField(blank=True, default="")
    matched = JSONTextField(default=list, blank=True)
    results = JSONTextField(default=list, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "processed", "rejected"]),
                name="inbox_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["source", "-id"], name="inbox_source_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.type or self.format} {self.message_id}"


class InboxBatch(models.Model):
    """The pending messages of one request, waiting for a worker.

    Written in the statement that stores the messages (so they commit together). A worker claims
    whole batches (`FOR UPDATE SKIP LOCKED`: one row lock per request, not per message), and deletes
    them in the transaction that marks their messages processed; a worker killed mid-way rolls back,
    and the batch is claimed again.
    """

    id = models.BigAutoField(primary_key=True)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    message_ids = models.JSONField()  # the InboxMessage ids, in order
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "inbox batches"

    def __str__(self) -> str:
        return f"{self.size} message(s) of source {self.source_id}"
