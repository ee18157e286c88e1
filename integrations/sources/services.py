"""Write paths of sources and mappings: create sources with their credentials, save mappings
(validated: a bad trigger or field is refused with where it is wrong), presets, credential lookup,
and the receipt of the Metronome- and Kable-compatible endpoints through their app's source."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from hub.errors import AuthenticationError, Conflict, HubError
from hub.models import App
from hub.races import unique_race_safe
from hub.ttl_cache import TTLCache
from integrations.vendors import vendor_source

from .actions import action_for
from .mapping_engine import CompiledMapping, MappingError, mapping_compile
from .models import InboxMessage, Mapping, Source
from .presets import DEFAULT_PRESETS, preset_get
from .receipt import inbox_receive_inline, inbox_refuse
from .triggers import TriggerError

WRITE_KEY_PREFIX = "wk_"
WEBHOOK_TOKEN_PREFIX = "wh_"


class MappingInvalid(HubError):
    """A mapping that does not compile: `field` is "trigger" or a target; `position` for triggers."""

    def __init__(self, message: str, *, field: str = "", position: int | None = None, pointer: str = ""):
        self.field = field
        self.position = position
        self.pointer = pointer
        super().__init__(message)

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": str(self), "field": self.field}
        if self.position is not None:
            body["position"] = self.position
        return body


def credential_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _set_write_key(source: Source) -> None:
    key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    source.write_key = key
    source.write_key_hash = credential_hash(key)


def _set_webhook_token(source: Source) -> None:
    token = WEBHOOK_TOKEN_PREFIX + secrets.token_urlsafe(24)
    source.webhook_token = token
    source.webhook_token_hash = credential_hash(token)


@unique_race_safe
@transaction.atomic
def source_create(
    *, app: App, name: str, shared_secret: str = "", presets: tuple[str, ...] | list[str] = DEFAULT_PRESETS
) -> Source:
    """Create a Segment source with a new write key and webhook token, and the preset mappings."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise HubError("A source needs a name of at most 100 characters.")
    if Source.objects.filter(app=app, name=name).exists():
        raise Conflict(f"The app already has a source named “{name}”.")
    source = Source(app=app, name=name, shared_secret=(shared_secret or "").strip())
    _set_write_key(source)
    _set_webhook_token(source)
    source.save()
    for key in presets:
        mapping_from_preset(source=source, key=key)
    _source_cache.clear()
    return source


@unique_race_safe
def source_update(*, source: Source, name: str | None = None, shared_secret: str | None = None,
                  enabled: bool | None = None) -> Source:  # fmt: skip
    """Rename, set or clear the shared secret (empty clears), enable or disable."""
    if name is not None:
        name = name.strip()
        if not name or len(name) > 100:
            raise HubError("A source needs a name of at most 100 characters.")
        if Source.objects.filter(app=source.app, name=name).exclude(pk=source.pk).exists():
            raise Conflict(f"The app already has a source named “{name}”.")
        source.name = name
    if shared_secret is not None:
        source.shared_secret = shared_secret.strip()
    if enabled is not None:
        source.enabled = enabled
    source.save()
    _source_cache.clear()
    return source


def source_rotate_credentials(
    *, source: Source, write_key: bool = True, webhook_token: bool = False
) -> Source:
    """New write key and/or webhook token; the old ones are refused at once in this process
    (within HUB_SOURCE_CACHE_SECONDS in others)."""
    if not source.is_segment:
        raise HubError("This source has no write key or webhook URL: its endpoint takes an API key.")
    if write_key:
        _set_write_key(source)
    if webhook_token:
        _set_webhook_token(source)
    source.save()
    _source_cache.clear()
    return source


# --- Metronome- and Kable-compatible sources ----------------------------------------------------


def vendor_source_get_or_create(*, app: App, kind: str) -> Source:
    """The app's Metronome or Kable source; made with its vendor's presets on first use (race-safe:
    one per app and kind is a database constraint, the loser of a race reads the winner's)."""
    source = Source.objects.select_related("app").filter(app=app, kind=kind).first()
    if source is not None:
        return source
    vendor = vendor_source(kind)
    name = vendor.name
    if Source.objects.filter(app=app, name=name).exists():
        name = f"{name} ({kind})"
    try:
        with transaction.atomic():
            source = Source.objects.create(app=app, kind=kind, name=name)
            for key in vendor.presets:
                mapping_from_preset(source=source, key=key)
    except IntegrityError:
        return Source.objects.select_related("app").get(app=app, kind=kind)
    return source


@dataclass
class VendorReceipt:
    """What became of a Metronome or Kable request's events, by their inbox outcome."""

    accepted: int = 0
    duplicates: int = 0
    not_stored: int = 0  # no mapping matched, or one failed: the debugger says why


def vendor_events_receive(*, app: App, kind: str, items: list[object]) -> VendorReceipt:
    """Keep validated Metronome or Kable events in the app's source's inbox and run its mappings
    on them before returning (the endpoints answer after the events are stored)."""
    source = vendor_source_get_or_create(app=app, kind=kind)
    if not source.enabled:
        raise AuthenticationError(f"The {source.get_kind_display()} endpoint is turned off for this app.")
    receipt = VendorReceipt()
    for outcome in inbox_receive_inline(source=source, items=items, format_kind=kind):
        if outcome == InboxMessage.Outcome.STORED:
            receipt.accepted += 1
        elif outcome == InboxMessage.Outcome.DUPLICATE:
            receipt.duplicates += 1
        else:
            receipt.not_stored += 1
    return receipt


def vendor_events_refuse(*, app: App, kind: str, items: list[object], reason: str) -> None:
    """Record the events of a refused Metronome or Kable request as rejected, with why."""
    source = vendor_source_get_or_create(app=app, kind=kind)
    inbox_refuse(source=source, items=items, format_kind=kind, reason=reason)


# --- Mappings -----------------------------------------------------------------------------------


def mapping_validate(*, name: str, trigger: str, action: str, fields: object) -> CompiledMapping:
    """Compile a mapping or raise MappingInvalid saying which part is wrong and where."""
    try:
        kind = action_for(action)
    except KeyError:
        raise MappingInvalid(f"Unknown action {action!r}.", field="action") from None
    try:
        compiled = mapping_compile(
            name=name, trigger=trigger, action=action, fields=fields, targets=[t.name for t in kind.targets]
        )
    except TriggerError as exc:
        raise MappingInvalid(
            f"Trigger: {exc}", field="trigger", position=exc.position, pointer=exc.pointer()
        ) from None
    except MappingError as exc:
        raise MappingInvalid(str(exc), field=exc.field or "fields") from None
    if not isinstance(fields, dict):
        raise MappingInvalid("fields must be an object.", field="fields")
    missing = [t.name for t in kind.targets if t.required and t.name not in fields]
    if missing:
        raise MappingInvalid(f"{', '.join(missing)} must be mapped for {kind.label}.", field=missing[0])
    return compiled


def mapping_save(
    *,
    source: Source,
    name: str,
    trigger: str,
    action: str,
    fields: object,
    enabled: bool = True,
    mapping: Mapping | None = None,
    position: int | None = None,
    preset: str = "",
) -> Mapping:
    """Create (or update `mapping`) after validating trigger and fields."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise MappingInvalid("A mapping needs a name of at most 100 characters.", field="name")
    mapping_validate(name=name, trigger=trigger, action=action, fields=fields)
    if mapping is None:
        mapping = Mapping(source=source, preset=preset)
        if position is None:
            position = (source.mappings.aggregate(m=Max("position"))["m"] or 0) + 1
    mapping.name = name
    mapping.trigger = trigger
    mapping.action = action
    mapping.fields = fields
    mapping.enabled = enabled
    if position is not None:
        mapping.position = position
    try:
        with transaction.atomic():
            mapping.save()
    except IntegrityError:
        raise MappingInvalid(f"The source already has a mapping named “{name}”.", field="name") from None
    return mapping


def mapping_from_preset(*, source: Source, key: str, name: str | None = None, **options: object) -> Mapping:
    """Add a mapping made from a preset (see presets.py)."""
    try:
        preset = preset_get(key, **options)
    except (KeyError, TypeError):
        raise HubError(f"Unknown preset {key!r}.") from None
    return mapping_save(
        source=source,
        name=name or preset.name,
        trigger=preset.trigger,
        action=preset.action,
        fields=preset.fields,
        preset=preset.key,
    )


def mapping_delete(*, mapping: Mapping) -> None:
    """Delete a mapping (its source's other mappings keep their order)."""
    mapping.delete()


def mapping_move(*, mapping: Mapping, delta: int) -> None:
    """Move a mapping up (-1) or down (+1) in its source's order."""
    with transaction.atomic():
        ordered = list(
            Mapping.objects.select_for_update().filter(source_id=mapping.source_id).order_by("position", "id")
        )
        index = next(i for i, m in enumerate(ordered) if m.pk == mapping.pk)
        other = index + delta
        if 0 <= other < len(ordered):
            ordered[index], ordered[other] = ordered[other], ordered[index]
        for position, m in enumerate(ordered, start=1):
            if m.position != position:
                Mapping.objects.filter(pk=m.pk).update(position=position)


# --- Credentials --------------------------------------------------------------------------------

# The enabled sources found by a credential's hash, for HUB_SOURCE_CACHE_SECONDS.
_source_cache: TTLCache[Source] = TTLCache(ttl=lambda: settings.HUB_SOURCE_CACHE_SECONDS, maxsize=10_000)


def _source_by(column: str, value: str) -> Source:
    digest = credential_hash(value)
    key = f"{column}:{digest}"
    hit = _source_cache.get(key)
    if hit is not None:
        return hit
    source = Source.objects.select_related("app").filter(**{column: digest}).first()
    if source is None or not source.enabled:
        raise AuthenticationError(
            "Invalid write key." if column == "write_key_hash" else "Unknown webhook URL."
        )
    _source_cache.set(key, source)
    return source


def source_by_write_key(key: str) -> Source:
    """The enabled source with this write key, or AuthenticationError."""
    if not key:
        raise AuthenticationError("Missing write key (send it as the Basic-auth user or writeKey).")
    return _source_by("write_key_hash", key)


def source_by_webhook_token(token: str) -> Source:
    """The enabled source of this webhook URL token, or AuthenticationError."""
    return _source_by("webhook_token_hash", token)


def source_cache_clear() -> None:
    """Forget this process's sources found by credential (tests; a change made here clears it too)."""
    _source_cache.clear()
