"""One module per platform: each vendor registers its formats, presets, app source, endpoints,
OpenAPI fragment and connector once, and every registry reads them from there; the vendor-
compatible endpoints validate a request by a dry run of the source's current mappings."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import resolve

from events.models import UsageEvent
from integrations.connectors import connector_for
from integrations.sources.formats import format_for
from integrations.sources.models import InboxMessage, Source
from integrations.sources.openapi import document_inbound_endpoints
from integrations.sources.presets import PRESETS
from integrations.sources.services import mapping_save, vendor_source_get_or_create
from integrations.vendors import kable, metronome, vendor_source, vendors_all
from tests.factories import api_key_for


def test_every_registry_reads_each_vendors_own_pieces():
    vendors = {v.key: v for v in vendors_all()}

    assert list(vendors) == ["segment", "mantle", "metronome", "kable", "chartmogul", "webhook"]
    for vendor in vendors.values():
        for fmt in vendor.formats:
            assert format_for(fmt.kind) is fmt
        if vendor.connector is not None:
            assert connector_for(vendor.connector.kind) is vendor.connector
    assert {p.key for v in vendors.values() for p in (x() if callable(x) else x for x in v.presets)} == set(
        PRESETS
    )
    assert vendor_source("metronome").presets == ("metronome_ingest",)
    assert resolve("/metronome/v1/ingest").func is metronome.metronome_ingest
    assert resolve("/kable/api/v1/events/create").func is kable.kable_events_create
    schema = document_inbound_endpoints({}, None, None, True)
    assert {"/metronome/v1/ingest", "/kable/api/v1/events/create", "/hooks/{token}"} <= set(schema["paths"])
    assert "KableClientSecret" in schema["components"]["securitySchemes"]


def test_the_presets_say_each_vendors_field_rules_once():
    """The track presets are Segment's sendEvent defaults, read from the connector's action."""
    metronome = connector_for("metronome").actions["sendEvent"].fields
    kable = connector_for("kable").actions["sendEvent"].fields

    assert PRESETS["metronome_track"].fields["customer_id"] == metronome["customer_id"]
    assert PRESETS["metronome_track"].fields["event_name"] == metronome["event_type"]
    assert PRESETS["kable_track"].fields["customer_id"] == kable["clientId"]
    assert PRESETS["kable_track"].fields["event_id"] == kable["transactionId"]


def _metronome(app, events):
    return Client().post(
        "/metronome/v1/ingest",
        json.dumps(events).encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key_for(app)[1]}"},
    )


@pytest.mark.django_db
def test_a_metronome_request_is_validated_by_the_sources_current_mapping_not_the_preset(app):
    """The user's mapping takes the timestamp from a property: a day ahead there refuses the
    request whole (400, nothing stored, the reason in the debugger), though the event's own
    timestamp is fine."""
    source = vendor_source_get_or_create(app=app, kind=Source.Kind.METRONOME)
    mapping = source.mappings.get()
    mapping_save(source=source, mapping=mapping, name=mapping.name, trigger=mapping.trigger,
                 action=mapping.action, fields={**mapping.fields, "timestamp": {"path": "$.properties.at"}})  # fmt: skip
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    event = {"transaction_id": "t-1", "customer_id": "shop-1", "event_type": "cpu_used",
             "timestamp": "2024-03-01T12:00:00Z", "properties": {"at": ahead}}  # fmt: skip

    response = _metronome(app, [event])

    assert response.status_code == 400
    assert "24 hours" in json.dumps(response.json())
    assert not UsageEvent.objects.exists()
    row = InboxMessage.objects.get(source=source)
    assert row.status == "rejected" and "24 hours" in row.error and mapping.name in row.error


@pytest.mark.django_db
def test_a_metronome_request_its_mapping_stores_passes_though_the_preset_would_refuse_it(app):
    """An event name over 255 characters: the preset would store it (refused), the user's
    mapping, which names events by a literal, stores it."""
    source = vendor_source_get_or_create(app=app, kind=Source.Kind.METRONOME)
    mapping = source.mappings.get()
    mapping_save(source=source, mapping=mapping, name=mapping.name, trigger=mapping.trigger,
                 action=mapping.action, fields={**mapping.fields, "event_name": {"literal": "usage"}})  # fmt: skip
    event = {"transaction_id": "t-1", "customer_id": "shop-1", "event_type": "x" * 300,
             "timestamp": "2024-03-01T12:00:00Z"}  # fmt: skip

    response = _metronome(app, [event])

    assert response.status_code == 200, response.content
    assert UsageEvent.objects.get(app=app).event_name == "usage"


@pytest.mark.parametrize("item", [[], "text", {"type": "Send Nothing"}])
def test_every_inbound_format_answers_an_item_it_does_not_take_with_an_error(item):
    """Each format keeps InboundFormat's contract (an error, never an exception), whichever way it
    is reached."""
    for vendor in vendors_all():
        for fmt in vendor.formats:
            received = fmt.normalize(item, received_at="2026-01-01T00:00:00.000Z")

            assert received.error, (fmt.kind, item)


def test_only_segment_renders_activities_the_other_connectors_refuse_them():
    from integrations.connectors import MessageRefused
    from integrations.delivery_rows import ActivityRow
    from integrations.models import Integration

    activity = ActivityRow(
        id="a1", app_id=1, kind="installed", timestamp="2026-01-01T00:00:00.000Z", properties={},
        customer_public_id="c1", customer_fields={},
    )  # fmt: skip
    segment = connector_for("segment")
    assert segment.activity_message(integration=Integration(kind="segment"), activity=activity)["event"]
    for vendor in vendors_all():
        if vendor.connector is None or vendor.connector.kind == "segment":
            continue
        with pytest.raises(MessageRefused):
            vendor.connector.activity_message(
                integration=Integration(kind=vendor.connector.kind), activity=activity
            )
