"""URLs of the sources: the inbound endpoints (each vendor's, under its own base URL) and the screens."""

from django.urls import path

from integrations.vendors import vendor_urlpatterns

from . import mapping_views, views

urlpatterns = [
    *vendor_urlpatterns(),
    # Screens
    path("apps/<str:app_id>/sources/", views.sources, name="sources"),
    path("apps/<str:app_id>/sources/<uuid:source_id>/", views.source_detail, name="source_detail"),
    path("apps/<str:app_id>/sources/<uuid:source_id>/debugger/", views.debugger, name="source_debugger"),
    path(
        "apps/<str:app_id>/sources/<uuid:source_id>/debugger/rows/",
        views.debugger_rows,
        name="source_debugger_rows",
    ),
    path(
        "apps/<str:app_id>/sources/<uuid:source_id>/mappings/new/",
        mapping_views.mapping_edit,
        name="mapping_new",
    ),
    path(
        "apps/<str:app_id>/sources/<uuid:source_id>/mappings/<int:mapping_id>/",
        mapping_views.mapping_edit,
        name="mapping_edit",
    ),
    path(
        "apps/<str:app_id>/sources/<uuid:source_id>/mappings/<int:mapping_id>/move/",
        mapping_views.mapping_move,
        name="mapping_move",
    ),
    path(
        "apps/<str:app_id>/sources/<uuid:source_id>/mappings/<int:mapping_id>/delete/",
        mapping_views.mapping_delete,
        name="mapping_delete",
    ),
    path("apps/<str:app_id>/sources/<uuid:source_id>/test/", mapping_views.mapping_test, name="mapping_test"),
]
