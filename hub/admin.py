"""The operator's console. Admin actions call the same services as the screens and the API."""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.template.response import TemplateResponse

from .models import ApiKey, App, Contact, Customer, Invitation, Membership, Workspace
from .services import accounts


class IdentifiedFilter(admin.SimpleListFilter):
    """Customers made from usage events before the app identified them are placeholders."""

    title = "identified"
    parameter_name = "identified"

    def lookups(self, request, model_admin):
        return [("yes", "Identified"), ("no", "Not identified yet")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(is_placeholder=False)
        if self.value() == "no":
            return queryset.filter(is_placeholder=True)
        return queryset


class MembershipInline(admin.TabularInline):
    """Members are managed on the workspace's Members screen, which keeps an owner and checks roles."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["user", "role", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Read-only: members are invited, given roles and removed on the workspace's Members screen (or
    with hub_apply), which never leaves a workspace without an owner."""

    list_display = ["workspace", "user", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["workspace__name", "user__username", "user__email"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made and revoked on the workspace's Members screen; the token is never kept."""

    list_display = [
        "email",
        "workspace",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter), "workspace"]
    search_fields = ["email", "workspace__name"]
    exclude = ["token_hash"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "public_id", "created_at"]
    list_filter = ["workspace", "created_at"]
    search_fields = ["name", "public_id", "workspace__name"]
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created on the app's Settings page or with hub_apply; the hash is never shown."""

    list_display = ["name", "prefix", "app", "created_by", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "app__workspace", "created_at"]
    search_fields = ["name", "prefix", "app__name"]
    fields = ["app", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["app", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset:
            accounts.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0


class CustomerAdminForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = ["myshopify_domain"]  # the admin gives the form its own list of fields

    def clean_myshopify_domain(self) -> str | None:
        """Lower case, as identify and usage events store and look domains up."""
        domain = self.cleaned_data.get("myshopify_domain")
        return domain.strip().lower() or None if domain else None


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """The API token is never shown: only its hash and ciphertext are stored."""

    form = CustomerAdminForm

    list_display = [
        "__str__",
        "app",
        "platform",
        "platform_id",
        "myshopify_domain",
        "identified",
        "created_at",
    ]
    list_filter = [IdentifiedFilter, "platform", "app__workspace", "app"]
    search_fields = ["name", "email", "platform_id", "myshopify_domain", "public_id"]
    readonly_fields = ["public_id", "identified_at", "created_at", "updated_at"]
    exclude = ["api_token_hash", "api_token"]
    autocomplete_fields = ["app"]
    inlines = [ContactInline]
    show_full_result_count = False
    actions = ["install", "subscribe", "review"]

    @admin.display(boolean=True, description="identified", ordering="is_placeholder")
    def identified(self, obj):
        return not obj.is_placeholder

    @admin.action(description="Install / reinstall the app")
    def install(self, request, queryset):
        _run_for_customers(self, request, queryset, lifecycle.installation_install, "Install")

    @admin.action(description="Subscribe / change plan…")
    def subscribe(self, request, queryset):
        app = _single_app(self, request, queryset)
        if app is None:
            return None
        form = PlanChoiceForm(request.POST if "apply" in request.POST else None, app=app)
        if not form.is_valid():
            return _action_page(self, request, queryset, form, "subscribe", "Subscribe or change plan")
        plan = form.cleaned_data["plan"]
        _run_for_customers(
            self,
            request,
            queryset,
            lambda *, customer: lifecycle.subscription_subscribe(customer=customer, plan=plan),
            f"Subscribe to {plan.name}",
        )
        return None

    @admin.action(description="Add a review…")
    def review(self, request, queryset):
        form = ReviewForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return _action_page(self, request, queryset, form, "review", "Add a review")
        rating, text = form.cleaned_data["rating"], form.cleaned_data["text"]
        _run_for_customers(
            self,
            request,
            queryset,
            lambda *, customer: lifecycle.review_create(customer=customer, rating=rating, text=text),
            "Review",
        )
        return None


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "label", "customer", "created_at"]
    search_fields = ["email", "name", "customer__name", "customer__platform_id"]
    list_filter = ["label"]
    autocomplete_fields = ["customer"]


# --- Lifecycle (hub/services/lifecycle.py): actions call the same services as the API ---------------------

from .errors import HubError  # noqa: E402
from .forms import PlanChoiceForm, ReviewForm  # noqa: E402
from .models import (  # noqa: E402
    Activity,
    ActivityOutbox,
    CustomerForward,
    Installation,
    Plan,
    Review,
    Subscription,
)
from .services import lifecycle, plans  # noqa: E402


def _run_transition(modeladmin, request, queryset, service, label: str) -> None:
    customers = [obj.customer for obj in queryset.select_related("customer")]
    _run_for_customers(modeladmin, request, customers, service, label)


def _run_for_customers(modeladmin, request, customers, service, label: str) -> None:
    """Call `service(customer=...)` for each customer; each refusal (409 and others) is reported."""
    done, failed = 0, []
    for customer in customers:
        try:
            service(customer=customer)
            done += 1
        except HubError as exc:
            failed.append(f"{customer}: {exc}")
    if done:
        modeladmin.message_user(request, f"{label}: {done} done.", messages.SUCCESS)
    for failure in failed:
        modeladmin.message_user(request, f"{label}: {failure}", messages.ERROR)


def _single_app(modeladmin, request, queryset) -> App | None:
    """The one app of the selected customers; a plan belongs to one app, so a mix is refused."""
    app_ids = set(queryset.values_list("app_id", flat=True))
    if len(app_ids) != 1:
        modeladmin.message_user(request, "Select customers of one app to choose its plan.", messages.ERROR)
        return None
    return App.objects.get(pk=app_ids.pop())


def _action_page(modeladmin, request, queryset, form, action: str, title: str) -> TemplateResponse:
    """The intermediate page of an action that needs input; it posts back to the same action."""
    return TemplateResponse(
        request,
        "admin/hub/lifecycle_action.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "opts": modeladmin.model._meta,
            "queryset": queryset,
            "form": form,
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        },
    )


class PlanAdminForm(forms.ModelForm):
    """The service's checks (a name, a price of zero or more, a three-letter currency)."""

    class Meta:
        model = Plan
        fields = ["app", "name", "amount", "currency", "interval", "archived_at"]

    def clean(self):
        data = super().clean()
        try:
            data.update(
                plans.plan_values_check(
                    name=data.get("name"),
                    amount=data.get("amount"),
                    currency=data.get("currency"),
                    interval=data.get("interval"),
                )
            )
        except HubError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans are also made on each app's Plans screen (with their usage limits)."""

    form = PlanAdminForm

    list_display = ["name", "app", "amount", "currency", "interval", "archived_at", "created_at"]
    list_filter = ["interval", "currency", ("archived_at", admin.EmptyFieldListFilter), "app__workspace"]
    search_fields = ["name", "public_id", "app__name"]
    autocomplete_fields = ["app"]
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(Installation)
class InstallationAdmin(admin.ModelAdmin):
    """State changes only through the actions (each records an activity)."""

    list_display = ["customer", "app", "status", "installed_at", "uninstalled_at", "frozen_at"]
    list_filter = ["status", "app__workspace", "app"]
    search_fields = ["customer__name", "customer__platform_id", "customer__myshopify_domain", "public_id"]
    readonly_fields = [f.name for f in Installation._meta.fields]
    actions = ["uninstall", "freeze", "reactivate"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Uninstall")
    def uninstall(self, request, queryset):
        _run_transition(self, request, queryset, lifecycle.installation_uninstall, "Uninstall")

    @admin.action(description="Freeze (deactivate)")
    def freeze(self, request, queryset):
        _run_transition(self, request, queryset, lifecycle.installation_freeze, "Freeze")

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        _run_transition(self, request, queryset, lifecycle.installation_reactivate, "Reactivate")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["customer", "plan", "status", "activated_at", "frozen_at", "cancelled_at"]
    list_filter = ["status", "app__workspace", "app"]
    search_fields = ["customer__name", "customer__platform_id", "plan__name", "public_id"]
    readonly_fields = [f.name for f in Subscription._meta.fields]
    actions = ["cancel", "freeze", "unfreeze"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel")
    def cancel(self, request, queryset):
        _run_transition(
            self, request, queryset.exclude(status="cancelled"), lifecycle.subscription_cancel, "Cancel"
        )

    @admin.action(description="Freeze")
    def freeze(self, request, queryset):
        _run_transition(
            self, request, queryset.exclude(status="cancelled"), lifecycle.subscription_freeze, "Freeze"
        )

    @admin.action(description="Unfreeze")
    def unfreeze(self, request, queryset):
        qs = queryset.exclude(status="cancelled")
        _run_transition(self, request, qs, lifecycle.subscription_unfreeze, "Unfreeze")


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Reviews are added through the customer's actions (each records an activity)."""

    list_display = ["customer", "app", "rating", "created_at"]
    list_filter = ["rating", "app__workspace"]
    search_fields = ["customer__name", "text"]
    readonly_fields = ["app", "customer", "rating", "text", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CustomerForward)
class CustomerForwardAdmin(admin.ModelAdmin):
    """Customer and contact changes the destinations have not taken yet: a long list here means
    no worker forwards."""

    list_display = ["id", "kind", "object_id", "app", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["app", "kind", "object_id", "snapshot", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ActivityOutbox)
class ActivityOutboxAdmin(admin.ModelAdmin):
    """Activities the fan-out has not taken yet: a long list here means no worker fans out."""

    list_display = ["id", "activity_id"]
    readonly_fields = ["activity"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DispatchedFilter(admin.SimpleListFilter):
    """Activities whose deliveries are created, or still queued in the outbox."""

    title = "dispatched"
    parameter_name = "dispatched"

    def lookups(self, request, model_admin):
        return [("yes", "Dispatched"), ("no", "Queued")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(queued=self.value() == "no")
        return queryset


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    """What the lifecycle recorded: read-only."""

    list_display = ["kind", "customer", "app", "occurred_at", "dispatched"]
    list_filter = ["kind", DispatchedFilter, "app__workspace"]
    search_fields = ["id", "customer__name", "customer__platform_id"]
    readonly_fields = [
        "id",
        "app",
        "customer",
        "kind",
        "occurred_at",
        "properties",
        "created_at",
        "dispatched",
    ]
    show_full_result_count = False

    def get_queryset(self, request):
        queued = ActivityOutbox.objects.filter(activity=models.OuterRef("pk"))
        return super().get_queryset(request).annotate(queued=models.Exists(queued))

    @admin.display(boolean=True, description="dispatched")
    def dispatched(self, obj: Activity) -> bool:
        return not obj.queued

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
