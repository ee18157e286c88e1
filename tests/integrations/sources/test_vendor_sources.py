"""The Metronome- and Kable-compatible endpoints go through the inbox of their app's `metronome` /
`kable` source: its (editable) mappings decide what is stored, inline, before the 2xx, and the
debugger shows each message's outcome."""

import io
import json

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from events.models import UsageEvent
from hub.errors import HubError
from integrations.sources.models import InboxMessage, Source
from integrations.sources.services import (
    mapping_save,
    source_rotate_credentials,
    vendor_source_get_or_create,
)
from tests.factories import SourceFactory, api_key_for

pytestmark = pytest.mark.django_db


def _post(url, body, **headers):
    return Client().post(url, json.dumps(body).encode(), content_type="application/json", headers=headers)


def _metronome(app, events):
    return _post("/metronome/v1/ingest", events, Authorization=f"Bearer {api_key_for(app)[1]}")


def _kable(app, events):
    secret = api_key_for(app)[1]
    return _post("/kable/api/v1/events/create", events,
                 **{"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret})  # fmt: skip


def _m_event(i, **extra):
    return {"transaction_id": f"t-{i}", "customer_id": "shop-1", "event_type": "cpu_used",
            "timestamp": "2024-03-01T12:00:00Z", "properties": {"cpu": i}, **extra}  # fmt: skip


def _k_event(i, **data):
    return {
        "clientId": "shop-2",
        "timestamp": "2024-03-01T12:00:00Z",
        "transactionId": f"k-{i}",
        "data": data,
    }


def test_metronome_events_are_kept_in_the_inbox_of_the_apps_metronome_source_and_stored_inline(app):
    response = _metronome(app, [_m_event(1), _m_event(1), _m_event(2)])

    assert response.status_code == 200
    source = Source.objects.get(app=app, kind="metronome")
    assert (source.write_key_hash, source.webhook_token_hash) == (None, None)
    assert [m.preset for m in source.mappings.all()] == ["metronome_ingest"]
    rows = InboxMessage.objects.filter(source=source).order_by("id")
    assert [(r.format, r.message_id, r.event, r.status, r.outcome) for r in rows] == [
        ("metronome", "t-1", "cpu_used", "processed", "stored"),
        ("metronome", "t-1", "cpu_used", "processed", "duplicate"),
        ("metronome", "t-2", "cpu_used", "processed", "stored"),
    ]
    assert sorted(UsageEvent.objects.filter(app=app).values_list("event_id", "event_name")) == [
        ("t-1", "cpu_used"), ("t-2", "cpu_used")]  # fmt: skip


def test_a_user_edited_mapping_on_the_metronome_source_changes_what_is_stored(app):
    _metronome(app, [_m_event(1)])
    source = Source.objects.get(app=app, kind="metronome")
    mapping = source.mappings.get()
    fields = {**mapping.fields, "event_name": {"template": "metronome.{{event_type}}"},
              "properties": {"object": {"cores": {"path": "$.properties.cpu"}, "region": {"literal": "eu"}}}}  # fmt: skip
    mapping_save(source=source, mapping=mapping, name=mapping.name, trigger='type = "track"',
                 action="usage_event", fields=fields)  # fmt: skip

    assert _metronome(app, [_m_event(2)]).status_code == 200

    event = UsageEvent.objects.get(app=app, event_id="t-2")
    assert (event.event_name, event.properties) == ("metronome.cpu_used", {"cores": 2, "region": "eu"})
    assert UsageEvent.objects.get(app=app, event_id="t-1").event_name == "cpu_used"


def test_kable_reports_accepted_and_duplicates_from_the_inbox_outcomes(app):
    first = _kable(app, [_k_event(1, eventName="export", rows=3), _k_event(2)])
    again = _kable(app, _k_event(1, eventName="export"))

    assert first.json() == {"success": True, "accepted": 2, "duplicates": 0}
    assert again.json() == {"success": True, "accepted": 0, "duplicates": 1}
    names = dict(UsageEvent.objects.filter(app=app).values_list("event_id", "event_name"))
    assert names == {"k-1": "export", "k-2": "kable_event"}
    source = Source.objects.get(app=app, kind="kable")
    assert [m.preset for m in source.mappings.all()] == ["kable_ingest"]


def test_a_kable_event_no_mapping_stores_is_neither_accepted_nor_a_duplicate(app):
    source = vendor_source_get_or_create(app=app, kind="kable")
    source.mappings.update(enabled=False)

    response = _kable(app, [_k_event(1)])

    assert response.json() == {"success": True, "accepted": 0, "duplicates": 0}
    assert InboxMessage.objects.get(source=source).outcome == "unmatched"
    assert not UsageEvent.objects.exists()


def test_the_debugger_lists_metronome_and_kable_messages_with_their_outcomes(logged_in, app):
    _metronome(app, [_m_event(1)])
    _metronome(app, [_m_event(1)])
    refused = _metronome(app, [_m_event(3, timestamp="yesterday")])
    _kable(app, [_k_event(1, eventName="export")])

    assert refused.status_code == 400
    metronome = Source.objects.get(app=app, kind="metronome")
    kable = Source.objects.get(app=app, kind="kable")
    html = logged_in.get(
        f"/apps/{app.public_id}/sources/{metronome.public_id}/debugger/rows/"
    ).content.decode()
    assert html.count('data-message-id="t-1"') == 2
    assert 'data-outcome="stored"' in html and 'data-outcome="duplicate"' in html
    assert 'data-message-id="t-3" data-outcome="rejected"' in html and "RFC 3339" in html
    assert "(metronome)" in html
    html = logged_in.get(f"/apps/{app.public_id}/sources/{kable.public_id}/debugger/").content.decode()
    assert 'data-message-id="k-1" data-outcome="stored"' in html and "export" in html


def test_the_screens_show_the_endpoint_and_api_key_auth_instead_of_a_write_key(logged_in, app):
    _kable(app, [_k_event(1)])
    _metronome(app, [_m_event(1)])
    metronome = Source.objects.get(app=app, kind="metronome")

    listing = logged_in.get(f"/apps/{app.public_id}/sources/").content.decode()
    detail = logged_in.get(f"/apps/{app.public_id}/sources/{metronome.public_id}/").content.decode()
    editor = logged_in.get(
        f"/apps/{app.public_id}/sources/{metronome.public_id}/mappings/{metronome.mappings.get().pk}/"
    )

    assert "Metronome API" in listing and "Kable API" in listing and "Metronome-compatible" in listing
    assert "http://testserver/metronome/v1/ingest" in detail and "Bearer &lt;API key&gt;" in detail
    assert 'data-testid="write-key"' not in detail and 'data-testid="webhook-url"' not in detail
    assert editor.status_code == 200 and "$.transaction_id" in editor.content.decode()
    with pytest.raises(HubError):
        source_rotate_credentials(source=metronome)


def test_one_source_per_app_and_kind_even_when_requests_race(app):
    first = vendor_source_get_or_create(app=app, kind="metronome")

    assert vendor_source_get_or_create(app=app, kind="metronome") == first
    with pytest.raises(IntegrityError), transaction.atomic():
        SourceFactory(app=app, kind="metronome", name="Another")
    with pytest.raises(IntegrityError), transaction.atomic():
        SourceFactory(app=app, kind="segment", name="No credentials")


def test_hub_apply_declares_mappings_of_the_metronome_and_kable_sources(app, tmp_path):
    doc = {"workspace": app.workspace.name, "apps": [{"name": app.name, "sources": [
        {"kind": "metronome", "mappings": [
            {"preset": "metronome_ingest"},
            {"name": "GPU", "trigger": 'type = "track" and properties.gpu > 0', "action": "usage_event",
             "fields": {"event_name": {"literal": "gpu_used"}, "customer_id": {"path": "$.customer_id"},
                        "event_id": {"template": "{{transaction_id}}:gpu"}}}]},
        {"kind": "kable", "name": "Kable prod"}]}]}  # fmt: skip
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(doc))
    out = io.StringIO()
    call_command("hub_apply", str(path), stdout=out)
    call_command("hub_apply", str(path), stdout=io.StringIO())

    declared = json.loads(out.getvalue())["apps"][0]["sources"]
    assert [(s["kind"], s["name"], "write_key" in s) for s in declared] == [
        ("metronome", "Metronome API", False), ("kable", "Kable prod", False)]  # fmt: skip
    metronome = Source.objects.get(app=app, kind="metronome")
    assert [m.name for m in metronome.mappings.all()] == ["Metronome ingest → usage event", "GPU"]
    assert Source.objects.get(app=app, kind="kable").mappings.count() == 1
    _metronome(app, [_m_event(1, properties={"gpu": 2})])
    assert sorted(UsageEvent.objects.filter(app=app).values_list("event_id", "event_name")) == [
        ("t-1", "cpu_used"), ("t-1:gpu", "gpu_used")]  # fmt: skip
