"""The operator's console for sources: credentials are never shown (not even hashed)."""

from django.contrib import admin

from .models import InboxMessage, Mapping, Source


class MappingInline(admin.TabularInline):
    model = Mapping
    extra = 0
    fields = ("position", "name", "enabled", "action", "trigger")
    show_change_link = True


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "app", "kind", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "app__name", "public_id")
    fields = ("app", "name", "kind", "enabled", "public_id", "created_at", "updated_at")
    readonly_fields = ("app", "public_id", "created_at", "updated_at")
    inlines = [MappingInline]


@admin.register(Mapping)
class MappingAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "position", "action", "enabled", "updated_at")
    list_filter = ("action", "enabled")
    search_fields = ("name", "trigger", "source__name")
    raw_id_fields = ("source",)


@admin.register(InboxMessage)
class InboxMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "format",
        "type",
        "event",
        "status",
        "outcome",
        "received_at",
        "processed_at",
    )
    list_filter = ("status", "outcome", "format", "type")
    search_fields = ("message_id", "event")
    raw_id_fields = ("source",)
    readonly_fields = [f.name for f in InboxMessage._meta.fields]
    show_full_result_count = False
