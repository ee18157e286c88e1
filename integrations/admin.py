"""The operator's console for integrations; actions call the same services as the screens."""

from django import forms
from django.contrib import admin, messages

from hub.errors import HubError
from hub.models import Activity

from . import services
from .forwarding import app_forwarding_refresh, subscription_compile
from .models import Attempt, Backfill, Delivery, Integration, Replay, Subscription
from .sources.mapping_engine import MappingError
from .sources.triggers import TriggerError


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
    """Credentials (write key, secrets) are never shown: encrypted at rest, replaced through the
    screens or `hub_apply`."""

    form = IntegrationAdminForm
    list_display = ["name", "workspace", "kind", "region", "enabled", "needs_attention", "created_at"]
    list_filter = ["kind", "region", "enabled", "needs_attention", "workspace"]
    search_fields = ["name", "workspace__name"]
    exclude = ["write_key", "secret", "previous_secret"]
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


class SubscriptionAdminForm(forms.ModelForm):
    """The services' checks: the trigger and mapping compile against the action's targets."""

    class Meta:
        model = Subscription
        fields = ["integration", "name", "action", "trigger", "fields", "enabled"]

    def clean(self):
        data = super().clean()
        if data.get("integration") is not None and not self.errors:
            candidate = Subscription(
                integration=data["integration"], name=data.get("name", ""), action=data.get("action", ""),
                trigger=data.get("trigger", ""), fields=data.get("fields") or {},
            )  # fmt: skip
            try:
                subscription_compile(candidate)
            except (TriggerError, MappingError) as exc:
                raise forms.ValidationError(str(exc)) from None
            except KeyError:
                self.add_error("action", "This destination has no such action.")
        return data


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """What a destination gets of its apps' usage events: a trigger and a mapping per action."""

    form = SubscriptionAdminForm
    list_display = ["name", "integration", "action", "trigger", "enabled"]
    list_filter = ["enabled", "action", "integration__kind"]
    search_fields = ["name", "integration__name"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        app_forwarding_refresh(app_ids=set(obj.integration.apps.values_list("pk", flat=True)))


@admin.register(Backfill)
class BackfillAdmin(admin.ModelAdmin):
    """Backfills of destinations and their progress (start them with `manage.py hub_backfill`)."""

    list_display = ["integration", "since", "until", "status", "done", "total", "queued", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Backfill._meta.fields]

    def has_add_permission(self, request):
        return False
