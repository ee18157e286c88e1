from django.contrib import admin

from .metrics.services import metric_rebuild_request
from .models import (
    ForwardBatch,
    Metric,
    MetricRollup,
    MetricUniqueValue,
    PlanUsageLimit,
    RollupBatch,
    UsageEvent,
    UsageEventKey,
    UsageEventRetention,
    UsageSignal,
)


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


@admin.register(UsageEventRetention)
class UsageEventRetentionAdmin(admin.ModelAdmin):
    """How long an app's raw usage events are kept (no row: forever). Whole monthly partitions go
    once every app in them allows it; rollups, reports and billing signals keep their figures."""

    list_display = ["app", "days", "updated_at"]
    raw_id_fields = ["app"]
    search_fields = ["app__name"]


class PlanUsageLimitInline(admin.TabularInline):
    model = PlanUsageLimit
    extra = 0
    autocomplete_fields = ["plan"]


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    """Definitions are edited on the Metrics screen or the API (validated there): inspect, rebuild."""

    list_display = ["name", "app", "event_name", "aggregation", "property", "group_by", "status", "built_at"]
    list_filter = ["status", "aggregation", "app__workspace"]
    search_fields = ["name", "event_name", "public_id"]
    readonly_fields = [
        "app", "public_id", "name", "event_name", "filters", "aggregation", "property", "group_by", "status",
        "version", "built_at", "created_at", "updated_at",
    ]  # fmt: skip
    inlines = [PlanUsageLimitInline]
    actions = ["rebuild"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Recompute from the stored events")
    def rebuild(self, request, queryset):
        for metric in queryset:
            metric_rebuild_request(metric=metric)
        self.message_user(request, f"{queryset.count()} metric(s) queued for a rebuild.")


@admin.register(UsageSignal)
class UsageSignalAdmin(admin.ModelAdmin):
    """Read-only: each row is a threshold crossed once in a billing period (with its activity)."""

    list_display = ["customer", "metric", "threshold", "period_start", "value", "limit", "created_at"]
    list_filter = ["threshold", "metric__app"]
    raw_id_fields = ["customer", "metric"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MetricRollup)
class MetricRollupAdmin(_ReadOnly):
    """Read-only: rollups are written by the rollup workers only."""

    list_display = ["metric", "customer", "group_key", "granularity", "bucket", "count", "sum", "min", "max"]
    list_filter = ["granularity", "metric__app"]
    raw_id_fields = ["metric", "customer"]
    show_full_result_count = False


@admin.register(MetricUniqueValue)
class MetricUniqueValueAdmin(_ReadOnly):
    list_display = ["metric", "customer", "group_key", "granularity", "bucket", "value_hash"]
    list_filter = ["granularity"]
    raw_id_fields = ["metric", "customer"]
    show_full_result_count = False


@admin.register(RollupBatch)
class RollupBatchAdmin(_ReadOnly):
    """Stored events not counted into the metrics yet: a long list here means no worker is draining."""

    list_display = ["id", "app", "created_at"]
    raw_id_fields = ["app"]


@admin.register(UsageEventKey)
class UsageEventKeyAdmin(_ReadOnly):
    """Dedupe keys of the events received in the dedupe window (HUB_USAGE_EVENT_DEDUPE_DAYS)."""

    list_display = ["event_id", "app", "received_at"]
    raw_id_fields = ["app"]
    search_fields = ["=event_id"]
    show_full_result_count = False


@admin.register(ForwardBatch)
class ForwardBatchAdmin(_ReadOnly):
    """Stored events the destinations have not taken yet: a long list here means no worker forwards."""

    list_display = ["id", "app", "created_at"]
    raw_id_fields = ["app"]


@admin.register(PlanUsageLimit)
class PlanUsageLimitAdmin(admin.ModelAdmin):
    """A plan's limit of a metric per billing period; thresholds in percent."""

    list_display = ["plan", "metric", "limit", "thresholds"]
    list_filter = ["plan__app"]
    autocomplete_fields = ["plan", "metric"]
