from django.contrib import admin

from .models import UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """Read-only: events are stored by the ingest APIs, exactly once."""

    list_display = ["event_name", "event_id", "customer", "app", "timestamp", "received_at"]
    list_filter = ["app__workspace", "app", "timestamp"]
    search_fields = ["event_id", "event_name"]
    raw_id_fields = ["app", "customer"]
    date_hierarchy = "timestamp"
    show_full_result_count = False
    readonly_fields = ["app", "customer", "event_id", "event_name", "timestamp", "properties", "received_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
