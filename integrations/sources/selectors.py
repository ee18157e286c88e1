"""Read paths of sources for the screens, each scoped to an app the caller may see."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from hub.models import App

from .mapping_engine import paths_of
from .models import InboxMessage, Mapping, Source


def sources_for_app(*, app: App) -> QuerySet[Source]:
    return app.sources.order_by("name")


def source_get(*, app: App, public_id: str | uuid.UUID) -> Source:
    """The app's source with this id, else Http404."""
    source = Source.objects.filter(app=app, public_id=public_id).select_related("app").first()
    if source is None:
        raise Http404("No such source.")
    return source


def mapping_get(*, source: Source, mapping_id: int) -> Mapping:
    mapping = source.mappings.filter(pk=mapping_id).first()
    if mapping is None:
        raise Http404("No such mapping.")
    return mapping


def inbox_latest(*, source: Source, limit: int = 50, after_id: int | None = None) -> list[InboxMessage]:
    """The source's latest received messages, newest first."""
    rows = InboxMessage.objects.filter(source=source)
    if after_id:
        rows = rows.filter(pk__gt=after_id)
    return list(rows.order_by("-id")[:limit])


def sample_messages(*, source: Source, limit: int = 20, type: str | None = None) -> list[dict[str, Any]]:
    """Recent accepted messages of the source (of one type when given), newest first."""
    rows = InboxMessage.objects.filter(source=source).exclude(status=InboxMessage.Status.REJECTED)
    if type:
        rows = rows.filter(type=type)
    return [m for m in rows.order_by("-id").values_list("payload", flat=True)[:limit] if isinstance(m, dict)]


def path_suggestions(*, source: Source, limit: int = 300) -> list[str]:
    """Paths seen in the source's recent messages (for the mapping editor), most common first."""
    counts: dict[str, int] = {}
    for message in sample_messages(source=source, limit=30):
        for path in paths_of(message, limit=200):
            counts[path] = counts.get(path, 0) + 1
    ordered = sorted(counts, key=lambda p: (-counts[p], p))
    return ["$." + p for p in ordered[:limit]]
