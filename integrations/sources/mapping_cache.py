"""This process's sources (with their apps) and compiled mappings, by source id, each with the
digest of the rows it was loaded from: processing reuses them while the database gives the same
digests (whatever changed the rows, a form or a bulk update), and loads only what changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from .actions import action_for
from .inbox_store import store
from .mapping_engine import CompiledMapping, MappingError, mapping_compile
from .models import Mapping, Source
from .triggers import TriggerError

logger = logging.getLogger(__name__)

_CACHE_MAX_SOURCES = 1000

_loaded_sources: dict[int, tuple[str, Source]] = {}
_compiled_mappings: dict[int, tuple[str, list[CompiledMapping]]] = {}


def sources_and_mappings(source_ids: set[int]) -> tuple[dict[int, Source], dict[int, list[CompiledMapping]]]:
    """The sources (with their apps) and compiled enabled mappings of `source_ids`: one query for
    their digests, and the ORM only for what changed since this process last loaded it."""
    state = store().source_states(source_ids)
    if state is None:
        sources = {s.pk: s for s in Source.objects.select_related("app").filter(pk__in=source_ids)}
        return sources, mappings_for_sources(source_ids)
    if len(_loaded_sources) > _CACHE_MAX_SOURCES:
        _loaded_sources.clear()
        _compiled_mappings.clear()
    # Built from local lookups, so another thread clearing the caches meanwhile changes nothing here.
    sources: dict[int, Source] = {}
    compiled: dict[int, list[CompiledMapping]] = {}
    stale = []
    for i, (app_digest, mappings_digest) in state.items():
        source = _loaded_sources.get(i)
        if source is not None and source[0] == app_digest:
            sources[i] = source[1]
        else:
            stale.append(i)
        mappings = _compiled_mappings.get(i)
        if mappings is not None and mappings[0] == mappings_digest:
            compiled[i] = mappings[1]
    if stale:
        for loaded in Source.objects.select_related("app").filter(pk__in=stale):
            sources[loaded.pk] = loaded
            _loaded_sources[loaded.pk] = (state[loaded.pk][0], loaded)
    changed = [i for i in state if i not in compiled]
    if changed:
        fresh = mappings_for_sources(set(changed))
        for i in changed:
            compiled[i] = fresh.get(i, [])
            _compiled_mappings[i] = (state[i][1], compiled[i])
    return sources, compiled


def mappings_for_sources(source_ids: set[int]) -> dict[int, list[CompiledMapping]]:
    """The enabled mappings of each source, compiled, in order (a broken one is left out, logged)."""
    out: dict[int, list[CompiledMapping]] = defaultdict(list)
    for m in Mapping.objects.filter(source_id__in=source_ids, enabled=True).order_by("position", "id"):
        try:
            targets = [t.name for t in action_for(m.action).targets]
            out[m.source_id].append(
                mapping_compile(
                    name=m.name, trigger=m.trigger, action=m.action, fields=m.fields, targets=targets, id=m.pk
                )
            )
        except (KeyError, TriggerError, MappingError):
            logger.warning("mapping %s of source %s does not compile; skipped", m.pk, m.source_id)
    return out
