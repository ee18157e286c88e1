"""`hub_apply` section `sources` (app level): declare an app's sources and their mappings.

    "sources": [{"name": "Segment", "shared_secret": "optional",
                 "mappings": [{"preset": "mantle_track"},
                              {"preset": "kable_track", "options": {"client_id_field": "userId"}},
                              {"name": "Reports", "trigger": "type = \\"track\\"", "action": "usage_event",
                               "fields": {"event_name": {"path": "$.event"}, ...}, "enabled": true}]}]

Sources and mappings are matched by name; declared mappings take their declared order. Without
`mappings` a new source starts with the default presets. Mappings not declared are left alone,
and so is what an entry omits: `shared_secret` and `enabled` of a source (`"shared_secret": null`
clears it), `trigger`, `action`, `fields` and `enabled` of a mapping (a preset gives the first
three).
`{"kind": "metronome"}` (or `"kable"`) declares the app's Metronome- or Kable-compatible source
instead (one per app, matched by kind, made with its preset when missing; `name` renames it).
"""

from __future__ import annotations

from typing import Any

# The document checks of `hub.config_apply` (a ConfigError naming the path), as on its own sections.
from hub.config_apply import ConfigError, _check_keys, _require, declared_value
from hub.errors import HubError
from hub.models import App
from integrations.vendors import vendor_source_kinds

from . import services
from .models import Source
from .presets import DEFAULT_PRESETS, preset_get

_SOURCE_KEYS = {"name", "kind", "shared_secret", "mappings", "enabled"}
_MAPPING_KEYS = {"name", "preset", "options", "trigger", "action", "fields", "enabled"}


def sources_apply(*, app: App, value: Any, path: str) -> list[dict[str, Any]]:
    """Apply the `sources` list of one app; return what exists (the write key only when created)."""
    _require(isinstance(value, list), path, "must be a list of sources")
    vendor_kinds = vendor_source_kinds()
    out = []
    for i, spec in enumerate(value):
        here = f"{path}[{i}]"
        _require(isinstance(spec, dict), here, "each source must be an object")
        _check_keys(spec, _SOURCE_KEYS, "source", here)
        kind = spec.get("kind", Source.Kind.SEGMENT)
        kinds = Source.Kind.values
        _require(kind in kinds, f"{here}.kind", f"must be one of {', '.join(kinds)}")
        name = spec.get("name")
        _require(
            (kind in vendor_kinds and name is None) or (isinstance(name, str) and name.strip()),
            f"{here}.name",
            "a source name is required",
        )
        secret = spec.get("shared_secret")  # omitted: kept; null: cleared
        _require(secret is None or isinstance(secret, str), f"{here}.shared_secret", "must be text")
        _require(
            "shared_secret" not in spec or kind not in vendor_kinds,
            f"{here}.shared_secret",
            f"a {kind} source has none",
        )
        mappings = spec.get("mappings")
        _require(mappings is None or isinstance(mappings, list), f"{here}.mappings", "must be a list")
        existing: Source | None
        if kind in vendor_kinds:
            created = not Source.objects.filter(app=app, kind=kind).exists()
            existing = services.vendor_source_get_or_create(app=app, kind=kind)
        else:
            existing = Source.objects.filter(app=app, name=name.strip(), kind=kind).first()
            created = existing is None
        try:
            if existing is None:
                source = services.source_create(
                    app=app,
                    name=name,
                    shared_secret=secret or "",
                    presets=() if mappings is not None else DEFAULT_PRESETS,
                )
            else:
                source = existing
                if kind in vendor_kinds:
                    if name is not None and name.strip() != source.name:
                        services.source_update(source=source, name=name)
                elif "shared_secret" in spec and (secret or "") != source.shared_secret:
                    services.source_update(source=source, shared_secret=secret or "")
            enabled = declared_value(spec, "enabled", obj=source, default=True, path=here)
            _require(isinstance(enabled, bool), f"{here}.enabled", "must be true or false")
            if enabled != source.enabled:
                services.source_update(source=source, enabled=enabled)
        except HubError as exc:
            raise ConfigError(f"{here}: {exc}") from None
        result: dict[str, Any] = {
            "name": source.name,
            "kind": source.kind,
            "id": str(source.public_id),
            "created": created,
        }
        if created and source.is_segment:
            result["write_key"] = source.write_key
            result["webhook_token"] = source.webhook_token
        result["mappings"] = [
            _apply_mapping(source, m, f"{here}.mappings[{j}]", position=j + 1)
            for j, m in enumerate(mappings or [])
        ]
        out.append(result)
    return out


def _apply_mapping(source: Source, spec: Any, path: str, *, position: int) -> dict[str, Any]:
    _require(isinstance(spec, dict), path, "each mapping must be an object")
    _check_keys(spec, _MAPPING_KEYS, "mapping", path)
    if "preset" in spec:
        options = spec.get("options") or {}
        _require(isinstance(options, dict), f"{path}.options", "must be an object")
        try:
            preset = preset_get(spec["preset"], **options)
        except (KeyError, TypeError):
            raise ConfigError(f"{path}.preset: unknown preset or options") from None
        fields: dict[str, Any] = {
            "name": preset.name,
            "trigger": preset.trigger,
            "action": preset.action,
            "fields": preset.fields,
        }
        fields.update({k: spec[k] for k in ("name", "trigger", "action", "fields") if k in spec})
        preset_key = preset.key
        _require(isinstance(fields["name"], str) and fields["name"].strip(), f"{path}.name", "is required")
        existing = source.mappings.filter(name=fields["name"].strip()).first()
    else:
        name = spec.get("name")
        _require(isinstance(name, str) and name.strip(), f"{path}.name", "is required")
        existing = source.mappings.filter(name=name.strip()).first()
        for key in ("trigger", "action", "fields"):  # a new mapping needs them; an existing one keeps its own
            _require(key in spec or existing is not None, f"{path}.{key}", "is required (or give a preset)")
        fields = {"name": name, **{k: declared_value(spec, k, obj=existing, default=None, path=path)
                                   for k in ("trigger", "action", "fields")}}  # fmt: skip
        preset_key = ""
    enabled = declared_value(spec, "enabled", obj=existing, default=True, path=path)
    _require(isinstance(enabled, bool), f"{path}.enabled", "must be true or false")
    try:
        mapping = services.mapping_save(
            source=source, mapping=existing, position=position, enabled=enabled, preset=preset_key, **fields,
        )  # fmt: skip
    except services.MappingInvalid as exc:
        field = f".{exc.field}" if exc.field in ("trigger", "action", "name") else f".fields.{exc.field}"
        raise ConfigError(f"{path}{field}: {exc}") from None
    return {"name": mapping.name, "created": existing is None}
