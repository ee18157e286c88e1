"""The operator's console for sources: credentials are never shown (not even hashed). Mappings are
validated as on the screens; sources are created on the screens (which make their credentials)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from .models import InboxBatch, InboxMessage, Mapping, Source
from .services import MappingInvalid, mapping_validate


class MappingAdminForm(forms.ModelForm):
    """Refuses a trigger or fields that do not compile, with the screens' message (and position)."""

    def clean(self):
        data = super().clean()
        instance = self.instance
        name, trigger, action = (data.get(k, getattr(instance, k)) for k in ("name", "trigger", "action"))
        fields = data.get("fields", instance.fields)
        try:
            mapping_validate(name=name or "", trigger=trigger or "", action=action or "", fields=fields)
        except MappingInvalid as exc:
            target = exc.field if exc.field in self.fields else None
            self.add_error(target, str(exc))
        return data


class MappingInline(admin.TabularInline):
    model = Mapping
    form = MappingAdminForm
    extra = 0
    fields = ("position", "name", "enabled", "action", "trigger")
    show_change_link = True


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "app", "kind", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "app__name", "public_id")
    fields = ("app", "name", "kind", "enabled", "public_id", "created_at", "updated_at")
    readonly_fields = ("app", "kind", "public_id", "created_at", "updated_at")
    inlines = [MappingInline]

    def has_add_permission(self, request):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        messages.info(
            request,
            "Create a source on its app's Sources screen (New source): it makes the write key and "
            "webhook URL. Metronome and Kable sources are made by their endpoints' first request.",
        )
        return redirect("admin:sources_source_changelist")


@admin.register(Mapping)
class MappingAdmin(admin.ModelAdmin):
    form = MappingAdminForm
    list_display = ("name", "source", "position", "action", "enabled", "updated_at")
    list_filter = ("action", "enabled")
    search_fields = ("name", "trigger", "source__name")
    autocomplete_fields = ("source",)


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


@admin.register(InboxBatch)
class InboxBatchAdmin(admin.ModelAdmin):
    """Pending batches, to see what waits for a worker. Made by receipts and deleted by workers:
    none is added, changed or deleted here (that would leave its messages pending for good), but
    deleting a source or an app deletes its batches with it, so the delete permission stays."""

    list_display = ("id", "source", "size", "created_at")
    list_select_related = ("source",)
    search_fields = ("source__name",)
    raw_id_fields = ("source",)
    readonly_fields = [f.name for f in InboxBatch._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        raise PermissionDenied("Batches are deleted by the workers that process them.")
