"""Every outside platform the hub speaks to, one module each, in both directions.

A vendor module (`segment`, `chartmogul`, `mantle`, `metronome`, `kable`, `webhook`) holds all the
hub knows about its platform: how it is received (its inbound wire format, its compatible endpoint
with that endpoint's request rules and authentication, its preset mappings, the app source its
endpoint keeps messages in), how it is sent (its connector: request shape, limits, auth, which
answers are permanent or retried, its default destination mappings), and its part of the OpenAPI
schema. It describes itself as one `Vendor` and registers it with `vendor_register`, which hands
each piece to the registry that serves it: `integrations.sources.formats` (formats),
`integrations.sources.presets` (presets), `integrations.connectors` (connectors); the URL
configuration (`vendor_urlpatterns`) and the OpenAPI hook (`integrations.sources.openapi`) read the
vendors themselves. Adding a platform is adding a module and naming it in `VENDOR_MODULES`.

The modules are imported by `IntegrationsConfig.ready()`, so every registry is complete once
Django is set up (the vendor modules import models and services, which need the app registry), in the order of
`VENDOR_MODULES`: the order presets are offered in and inbound formats are tried in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from integrations.connectors import Connector, connector_register
from integrations.sources.formats import InboundFormat, format_register
from integrations.sources.presets import Preset, preset_register


@dataclass(frozen=True)
class VendorSource:
    """The app source a vendor's compatible endpoint keeps its messages in (one per app and kind,
    made on the endpoint's first request): its `Source.Kind`, default name and preset keys."""

    kind: str
    name: str
    presets: tuple[str, ...]


@dataclass(frozen=True)
class OpenApiFragment:
    """A vendor's part of the OpenAPI schema. `schemas` and `paths` are built when the schema is
    generated (limits come from the settings); `webhook_items` names the schemas of the items a
    source's webhook URL takes in this vendor's format."""

    schemas: Callable[[], dict[str, dict]] = dict
    paths: Callable[[], dict[str, dict]] = dict
    security_schemes: dict[str, dict] = field(default_factory=dict)
    webhook_items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vendor:
    key: str
    label: str
    formats: tuple[InboundFormat, ...] = ()
    presets: tuple[Preset | Callable[..., Preset], ...] = ()
    source: VendorSource | None = None
    urlpatterns: Callable[[], list[Any]] | None = None
    openapi: OpenApiFragment | None = None
    connector: Connector | None = None


_REGISTRY: dict[str, Vendor] = {}


def vendor_register(vendor: Vendor) -> Vendor:
    """Register a vendor and hand its formats, presets and connector to their registries."""
    _REGISTRY[vendor.key] = vendor
    for fmt in vendor.formats:
        format_register(fmt)
    for preset in vendor.presets:
        preset_register(preset)
    if vendor.connector is not None:
        connector_register(vendor.connector)
    return vendor


def vendors_all() -> list[Vendor]:
    """The registered vendors, in registration order."""
    return list(_REGISTRY.values())


def vendor_source(kind: str) -> VendorSource:
    """The app source of a vendor-compatible endpoint by `Source.Kind` (KeyError for another kind)."""
    for vendor in _REGISTRY.values():
        if vendor.source is not None and vendor.source.kind == kind:
            return vendor.source
    raise KeyError(kind)


def vendor_source_kinds() -> tuple[str, ...]:
    """The `Source.Kind`s of the vendor-compatible endpoints' app sources."""
    return tuple(vendor.source.kind for vendor in _REGISTRY.values() if vendor.source is not None)


def vendor_urlpatterns() -> list[Any]:
    """The inbound endpoints of every vendor (each under its own base URL)."""
    return [
        pattern for vendor in _REGISTRY.values() if vendor.urlpatterns for pattern in vendor.urlpatterns()
    ]


VENDOR_MODULES = ("segment", "mantle", "metronome", "kable", "chartmogul", "webhook")


def vendors_load() -> None:
    """Import every vendor module (each registers itself); called once, from the app's ready()."""
    for name in VENDOR_MODULES:
        import_module(f"{__name__}.{name}")
