"""This process's sources (with their apps) and compiled mappings, by source id, each with the
digest of the rows it was loaded from: processing reuses them while the database gives the same
digests (whatever changed the rows, a form or a bulk update), and loads only what changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from hub.ttl_cache import TTLCache

from .actions import action_for
from .inbox_store import store
from .mapping_engine import CompiledMapping, MappingError, mapping_compile
from .models import Mapping, Source
from .triggers import TriggerError

logger = logging.getLogger(__name__)

# Every use checks an entry against the digest: the time limit only bounds how long a source no
# longer received from stays in memory, and the size how many sources a process keeps.
_KEPT_SECONDS = 3600.0
_MAX_SOURCES = 1000
_loaded_sources: TTLCache[tuple[str, Source]] = TTLCache(ttl=_KEPT_SECONDS, maxsize=_MAX_SOURCES)
_compiled_mappings: TTLCache[tuple[str, list[CompiledMapping]]] = TTLCache(
    ttl=_KEPT_SECONDS, maxsize=_MAX_SOURCES
)


def sources_and_mappings(source_ids: set[int]) -> tuple[dict[int, Source], dict[int, list[CompiledMapping]]]:
    """The sources (with their apps) and compiled enabled mappings of `source_ids`: one query for
    their digests, and the ORM only for what changed since this process last loaded it."""
    state = store().source_states(source_ids)
    if state is None:
        every = {s.pk: s for s in Source.objects.select_related("app").filter(pk__in=source_ids)}
        return every, mappings_for_sources(source_ids)
    # Built from local lookups, so another thread's changes to the caches meanwhile change nothing here.
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
            _loaded_sources.set(loaded.pk, (state[loaded.pk][0], loaded))
    changed = [i for i in state if i not in compiled]
    if changed:
        fresh = mappings_for_sources(set(changed))
        for i in changed:
            compiled[i] = fresh.get(i, [])
            _compiled_mappings.set(i, (state[i][1], compiled[i]))
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
