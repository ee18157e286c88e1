"""The usage-event store."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.models import App, Customer


class UsageEvent(models.Model):
    """One usage event, stored exactly once per (app, event_id)."""

    id = models.BigAutoField(primary_key=True)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="usage_events")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_events")
    event_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "event_id"], name="usage_event_unique_event_id"),
        ]
        indexes = [
            # Keyset pagination of the Usage events screen, newest first, with and without filters.
            models.Index(fields=["app", "-timestamp", "-id"], name="usage_event_app_time"),
            models.Index(fields=["customer", "-timestamp", "-id"], name="usage_event_customer_time"),
            models.Index(fields=["app", "event_name", "-timestamp", "-id"], name="usage_event_name_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} ({self.event_id})"
