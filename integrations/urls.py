"""URLs of the integration screens (included by hub/urls.py)."""

from django.urls import path

from . import destination_views, views
from .destinations import DESTINATION_KINDS

urlpatterns = [
    path("w/<slug:slug>/integrations/", views.integration_list, name="integration_list"),
    path("w/<slug:slug>/integrations/segment/new/", views.segment_create, name="segment_create"),
    path("w/<slug:slug>/integrations/<int:integration_id>/", views.integration_edit, name="integration_edit"),
    path(
        "w/<slug:slug>/integrations/<int:integration_id>/test/",
        views.integration_test,
        name="integration_test",
    ),
    path(
        "w/<slug:slug>/integrations/<int:integration_id>/deliveries/", views.delivery_log, name="delivery_log"
    ),
    path(
        "w/<slug:slug>/integrations/<int:integration_id>/deliveries/retry/",
        views.delivery_retry,
        name="delivery_retry",
    ),
    path(
        "w/<slug:slug>/integrations/<int:integration_id>/deliveries/replay/",
        views.deliveries_replay,
        name="deliveries_replay",
    ),
    *(
        path(
            f"w/<slug:slug>/integrations/{kind}/new/",
            destination_views.destination_create,
            {"kind": kind},
            name=f"destination_create_{kind}",
        )
        for kind in DESTINATION_KINDS
    ),
    path(
        "w/<slug:slug>/destinations/<int:destination_id>/",
        destination_views.destination_edit,
        name="destination_edit",
    ),
    path(
        "w/<slug:slug>/destinations/<int:destination_id>/rotation-end/",
        destination_views.destination_rotation_end,
        name="destination_rotation_end",
    ),
    path(
        "w/<slug:slug>/destinations/<int:destination_id>/backfill/",
        destination_views.destination_backfill,
        name="destination_backfill",
    ),
    path(
        "w/<slug:slug>/destinations/<int:destination_id>/subscriptions/<int:subscription_id>/",
        destination_views.subscription_edit,
        name="subscription_edit",
    ),
    path(
        "w/<slug:slug>/destinations/<int:destination_id>/subscriptions/<int:subscription_id>/preview/",
        destination_views.subscription_preview,
        name="subscription_preview",
    ),
]
