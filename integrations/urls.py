"""URLs of the integration screens (included by hub/urls.py)."""

from django.urls import path

from . import views

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
]
