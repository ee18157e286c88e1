"""Mapping presets: a source's ready-made mappings, as the seeds set them up in Segment
(REFERENCE §1, §2). Each platform's presets live in its vendor module (`integrations/vendors/`)
and are registered here by `vendor_register`; a preset with settings (Kable's) is registered as
the function that makes it, called without options for its default form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    trigger: str
    action: str
    fields: dict[str, Any]
    description: str = ""


def path(value: str) -> dict:
    """The field spec reading one JSON path."""
    return {"path": value}


# Every preset in its default form, by key, in the order they are offered.
PRESETS: dict[str, Preset] = {}
_MAKERS: dict[str, Callable[..., Preset]] = {}
# What a new source starts with: Mantle's track mapping and ChartMogul's identify and group.
DEFAULT_PRESETS = ("mantle_track", "chartmogul_contact", "chartmogul_customer")


def preset_register(preset: Preset | Callable[..., Preset]) -> None:
    """Offer a preset; a function is one with settings, called with none for its default form."""
    if callable(preset):
        default = preset()
        _MAKERS[default.key] = preset
        PRESETS[default.key] = default
    else:
        PRESETS[preset.key] = preset


def preset_get(key: str, **options: Any) -> Preset:
    """A preset by key (KeyError for an unknown one); one with settings takes them as options
    (TypeError for an unknown option)."""
    if key in _MAKERS:
        return _MAKERS[key](**options)
    return PRESETS[key]


def kable_track(**options: Any) -> Preset:
    """Kable's track preset with its settings (`client_id_field`, `properties_mappings`)."""
    return preset_get("kable_track", **options)
