"""The operator's console. Admin actions call the same services as the screens and the API."""

from django.contrib import admin, messages

from . import services
from .models import ApiKey, App, Contact, Customer, Membership, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["workspace", "user", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["workspace__name", "user__username", "user__email"]
    autocomplete_fields = ["user", "workspace"]


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
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """The API token is never shown: only its hash and ciphertext are stored."""

    list_display = [
        "__str__",
        "app",
        "platform",
        "platform_id",
        "myshopify_domain",
        "is_placeholder",
        "created_at",
    ]
    list_filter = ["is_placeholder", "platform", "app__workspace", "app"]
    search_fields = ["name", "email", "platform_id", "myshopify_domain", "public_id"]
    readonly_fields = ["public_id", "identified_at", "created_at", "updated_at"]
    exclude = ["api_token_hash", "api_token"]
    raw_id_fields = ["app"]
    inlines = [ContactInline]
    show_full_result_count = False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "label", "customer", "created_at"]
    search_fields = ["email", "name", "customer__name", "customer__platform_id"]
    list_filter = ["label"]
    raw_id_fields = ["customer"]
