"""The operator's console for integrations; actions call the same services as the screens."""

from django import forms
from django.contrib import admin, messages

from hub.errors import HubError
from hub.models import Activity

from . import services
from .models import Attempt, Delivery, Integration, Replay


class IntegrationAdminForm(forms.ModelForm):
    """The screens' checks: apps of the integration's workspace only, a custom host that passes
    the outbound-URL guard; the activities as checkboxes, as on the screen."""

    activities = forms.MultipleChoiceField(
        choices=Activity.Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The activities of the chosen apps sent to this integration.",
    )

    class Meta:
        model = Integration
        fields = [
            "workspace", "kind", "name", "region", "custom_host", "apps", "activities", "user_id_field",
            "enabled", "needs_attention", "attention_reason",
        ]  # fmt: skip

    def clean(self):
        data = super().clean()
        workspace = data.get("workspace")
        if workspace is not None and "apps" in data:
            try:
                services.integration_apps_check(workspace=workspace, apps=list(data["apps"]))
            except HubError as exc:
                self.add_error("apps", str(exc))
        if "region" in data:
            try:
                data["custom_host"] = services.integration_destination_check(
                    region=data["region"], custom_host=data.get("custom_host", "")
                )
            except HubError as exc:
                self.add_error("custom_host", str(exc))
        return data


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    """The write key is never shown (encrypted at rest; replace it on the Segment screen)."""

    form = IntegrationAdminForm
    list_display = ["name", "workspace", "kind", "region", "enabled", "needs_attention", "created_at"]
    list_filter = ["kind", "region", "enabled", "needs_attention", "workspace"]
    search_fields = ["name", "workspace__name"]
    exclude = ["write_key"]
    filter_horizontal = ["apps"]
    actions = ["send_test_event"]

    @admin.action(description="Send test event")
    def send_test_event(self, request, queryset):
        for integration in queryset:
            delivery, attempt = services.integration_send_test(integration=integration)
            answer = f"HTTP {attempt.status_code}" if attempt and attempt.status_code else delivery.last_error
            level = messages.SUCCESS if delivery.status == Delivery.Status.DELIVERED else messages.ERROR
            self.message_user(request, f"{integration.name}: {answer}", level)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "integration",
        "activity",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
    ]
    list_filter = ["status", "integration__workspace", "integration"]
    search_fields = ["id", "activity__id", "activity__customer__platform_id"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    show_full_result_count = False
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry (queue again now)")
    def retry(self, request, queryset):
        done = 0
        for delivery in queryset:
            try:
                services.delivery_retry(delivery=delivery)
                done += 1
            except HubError as exc:
                self.message_user(request, f"{delivery.pk}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"Queued {done} deliveries again.", messages.SUCCESS)


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "integration",
        "url",
        "message_count",
        "status_code",
        "latency_ms",
        "outcome",
    ]
    list_filter = ["outcome", "status_code", "integration"]
    readonly_fields = [f.name for f in Attempt._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False


@admin.register(Replay)
class ReplayAdmin(admin.ModelAdmin):
    list_display = ["integration", "since", "until", "total", "created_by", "created_at"]
    readonly_fields = ["integration", "since", "until", "total", "created_by", "created_at"]

    def has_add_permission(self, request):
        return False
