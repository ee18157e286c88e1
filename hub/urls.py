"""URL map: the screens, the admin, the API under /v1/, health probes and API docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from events import api as events_api
from events import lifecycle_views, metric_views, metrics_api, plan_views
from events import views as events_views
from hub import member_views

from . import api, health, lifecycle_api, login, views
from .observability import prometheus

api_v1 = [
    path("app", api.AppView.as_view(), name="api_app"),
    path("identify", api.IdentifyView.as_view(), name="api_identify"),
    path("customer", metrics_api.CustomerWithUsageView.as_view(), name="api_customer"),
    path("usage_events", events_api.UsageEventsView.as_view(), name="api_usage_events"),
    path(
        "usage_events/<str:id>/report",
        metrics_api.UsageEventsReportView.as_view(),
        name="api_usage_events_report",
    ),
    path("usage_metrics", metrics_api.UsageMetricsView.as_view(), name="api_usage_metrics"),
    path("usage_metrics/<str:id>", metrics_api.UsageMetricView.as_view(), name="api_usage_metric"),
    path(
        "usage_metrics/<str:id>/report",
        metrics_api.UsageMetricReportView.as_view(),
        name="api_usage_metric_report",
    ),
    # Lifecycle (hub/lifecycle_api.py)
    path("app_installations", lifecycle_api.AppInstallationsView.as_view(), name="api_app_installations"),
    path("app_installations/install", lifecycle_api.InstallView.as_view(), name="api_installation_install"),
    path(
        "app_installations/uninstall",
        lifecycle_api.UninstallView.as_view(),
        name="api_installation_uninstall",
    ),
    path(
        "app_installations/freeze",
        lifecycle_api.InstallationFreezeView.as_view(),
        name="api_installation_freeze",
    ),
    path(
        "app_installations/unfreeze",
        lifecycle_api.InstallationUnfreezeView.as_view(),
        name="api_installation_unfreeze",
    ),
    path("subscriptions", lifecycle_api.SubscriptionsView.as_view(), name="api_subscriptions"),
    path(
        "subscriptions/freeze", lifecycle_api.SubscriptionFreezeView.as_view(), name="api_subscription_freeze"
    ),
    path(
        "subscriptions/unfreeze",
        lifecycle_api.SubscriptionUnfreezeView.as_view(),
        name="api_subscription_unfreeze",
    ),
    path("reviews", lifecycle_api.ReviewsView.as_view(), name="api_reviews"),
]

urlpatterns = [
    # The API and the probes first: the resolver tries the patterns in order, and these answer
    # most requests (no pattern below matches a path under v1/ or a probe's).
    path("v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", login.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("workspaces/new/", views.workspace_create, name="workspace_create"),
    path("w/<slug:slug>/", views.workspace_home, name="workspace_home"),
    path("w/<slug:slug>/apps/new/", views.app_create, name="app_create"),
    path("w/<slug:slug>/members/", member_views.workspace_members, name="workspace_members"),
    path("w/<slug:slug>/members/invite/", member_views.member_invite, name="member_invite"),
    path("w/<slug:slug>/members/<int:membership_id>/role/", member_views.member_role, name="member_role"),
    path(
        "w/<slug:slug>/members/<int:membership_id>/remove/", member_views.member_remove, name="member_remove"
    ),
    path(
        "w/<slug:slug>/members/<int:membership_id>/password-link/",
        member_views.member_password_link,
        name="member_password_link",
    ),
    path(
        "w/<slug:slug>/invitations/<int:invitation_id>/revoke/",
        member_views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("w/<slug:slug>/delete/", member_views.workspace_delete, name="workspace_delete"),
    path("invite/<str:token>/", member_views.invitation_accept, name="invitation_accept"),
    path("account/", member_views.account, name="account"),
    path("apps/<str:app_id>/settings/", views.app_settings, name="app_settings"),
    path("apps/<str:app_id>/api-keys/", views.api_key_create, name="api_key_create"),
    path(
        "apps/<str:app_id>/api-keys/<int:key_id>/revoke/",
        views.api_key_revoke,
        name="api_key_revoke",
    ),
    path("apps/<str:app_id>/usage-events/", events_views.usage_events, name="usage_events"),
    path("apps/<str:app_id>/metrics/", metric_views.metrics, name="metrics"),
    path("apps/<str:app_id>/metrics/new/", metric_views.metric_edit, name="metric_create"),
    path("apps/<str:app_id>/metrics/<str:metric_id>/", metric_views.metric_detail, name="metric_detail"),
    path("apps/<str:app_id>/metrics/<str:metric_id>/edit/", metric_views.metric_edit, name="metric_edit"),
    path(
        "apps/<str:app_id>/metrics/<str:metric_id>/limits/", metric_views.metric_limits, name="metric_limits"
    ),
    path(
        "apps/<str:app_id>/metrics/<str:metric_id>/delete/",
        metric_views.metric_delete_view,
        name="metric_delete",
    ),
    path("apps/<str:app_id>/plans/", plan_views.plans, name="plans"),
    path("apps/<str:app_id>/plans/new/", plan_views.plan_edit, name="plan_create"),
    path("apps/<str:app_id>/plans/<str:plan_id>/", plan_views.plan_edit, name="plan_edit"),
    path("apps/<str:app_id>/plans/<str:plan_id>/archive/", plan_views.plan_archive, name="plan_archive"),
    path("apps/<str:app_id>/customers/", events_views.customers, name="customers"),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/",
        events_views.customer_detail,
        name="customer_detail",
    ),
    # The Customer view's lifecycle actions (events/lifecycle_views.py), POST only
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/install/",
        lifecycle_views.installation_install,
        name="customer_installation_install",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/uninstall/",
        lifecycle_views.installation_uninstall,
        name="customer_installation_uninstall",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/installation/freeze/",
        lifecycle_views.installation_freeze,
        name="customer_installation_freeze",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/installation/reactivate/",
        lifecycle_views.installation_reactivate,
        name="customer_installation_reactivate",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/subscribe/",
        lifecycle_views.subscription_subscribe,
        name="customer_subscription_subscribe",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/subscription/cancel/",
        lifecycle_views.subscription_cancel,
        name="customer_subscription_cancel",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/subscription/freeze/",
        lifecycle_views.subscription_freeze,
        name="customer_subscription_freeze",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/subscription/unfreeze/",
        lifecycle_views.subscription_unfreeze,
        name="customer_subscription_unfreeze",
    ),
    path(
        "apps/<str:app_id>/customers/<str:customer_id>/lifecycle/reviews/",
        lifecycle_views.review_create,
        name="customer_review_create",
    ),
    path("", include("integrations.sources.urls")),  # Segment, webhook, Metronome, Kable; source screens
    path("", include("integrations.urls")),  # Settings → Integrations, delivery log
    path("admin/", admin.site.urls),
    path("metrics", prometheus.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api_schema"), name="api_redoc"),
]
