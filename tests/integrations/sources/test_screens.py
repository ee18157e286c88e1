"""The screens: sources list and creation, a source's URLs and keys, the mapping editor (validation
pointing at the trigger's position, Send test event), and the debugger."""

import json
import re

import pytest
from django.db import connection
from django.utils import timezone

from events.models import UsageEvent
from integrations.sources.models import Mapping, Source
from integrations.sources.processing import inbox_process_pending
from integrations.sources.receipt import inbox_receive

pytestmark = pytest.mark.django_db


def test_create_a_source_and_see_what_to_paste(logged_in, app):
    response = logged_in.post(
        f"/apps/{app.public_id}/sources/", {"name": "Segment prod", "shared_secret": "s"}
    )
    source = Source.objects.get(app=app)
    assert response.status_code == 302
    html = logged_in.get(response.url).content.decode()
    assert source.write_key in html
    assert f"/hooks/{source.webhook_token}" in html
    assert "http://testserver/segment" in html
    assert "/metronome/v1/ingest" in html and "/kable/api/v1/events/create" in html
    assert [m.preset for m in source.mappings.all()] == [
        "mantle_track",
        "chartmogul_contact",
        "chartmogul_customer",
    ]
    # Secrets are encrypted at rest.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT write_key, webhook_token, shared_secret FROM sources_source WHERE id = %s", [source.pk]
        )
        row = cursor.fetchone()
    raw = dict(zip(["write_key", "webhook_token", "shared_secret"], row, strict=True))
    assert (
        source.write_key not in str(raw)
        and source.webhook_token not in str(raw)
        and raw["shared_secret"] != "s"
    )


def _form(**overrides):
    data = {"name": "Reports", "enabled": "on", "trigger": 'type = "track" and event = "Report"',
            "action": "usage_event", "kind_event_name": "path", "value_event_name": "$.event",
            "kind_customer_id": "path", "value_customer_id": "$.properties.shop",
            "kind_properties": "literal", "value_properties": '{"fixed": 1}'}  # fmt: skip
    data.update(overrides)
    return data


def test_mapping_editor_saves_and_refuses_a_bad_trigger_with_its_position(logged_in, app, source):
    url = f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/"
    page = logged_in.get(url)
    assert page.status_code == 200 and "Send test event" in page.content.decode()
    bad = logged_in.post(url, _form(trigger='type = "track" and event =='))
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "at position 27" in html and " " * 26 + "^" in html
    assert logged_in.post(url, _form()).status_code == 302
    mapping = Mapping.objects.get(source=source, name="Reports")
    assert mapping.fields == {"event_name": {"path": "$.event"}, "customer_id": {"path": "$.properties.shop"},
                              "properties": {"literal": {"fixed": 1}}}  # fmt: skip
    assert mapping.position == 4
    edit = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/{mapping.pk}/")
    assert "$.properties.shop" in edit.content.decode()


def test_suggestions_come_from_recent_messages(logged_in, app, source):
    inbox_receive(source=source, items=[{"type": "track", "event": "x", "userId": "u",
                                         "properties": {"seats_used": 3}}], format_kind="segment")  # fmt: skip
    html = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/").content.decode()
    assert '<option value="$.properties.seats_used">' in html
    assert "seats_used" in html.split("data-test-message")[1]  # the latest message is the sample


def test_send_test_event_shows_the_record_or_errors_and_can_store(logged_in, app, source):
    url = f"/apps/{app.public_id}/sources/{source.public_id}/test/"
    message = {"type": "track", "event": "Report", "messageId": "t-1", "userId": "u",
               "properties": {"shop": "shop-1"}}  # fmt: skip
    result = logged_in.post(url, {**_form(), "message": json.dumps(message)}).json()
    assert result["matched"] and result["errors"] == []
    assert result["record"]["event_name"] == "Report" and result["record"]["customer_id"] == "shop-1"
    assert not UsageEvent.objects.exists()

    missing = logged_in.post(url, {**_form(), "message": json.dumps({**message, "properties": {}})}).json()
    assert "customerId" in missing["errors"][0]
    unmatched = logged_in.post(url, {**_form(), "message": json.dumps({**message, "event": "Other"})}).json()
    assert not unmatched["matched"] and "does not match" in unmatched["errors"][0]

    stored = logged_in.post(url, {**_form(), "message": json.dumps(message), "store": "1"}).json()
    assert stored["stored"] == "stored"
    assert UsageEvent.objects.get().event_id == "t-1"
    assert stored["stored_url"] == f"/apps/{app.public_id}/usage-events/"  # the result links to it


def test_storing_is_offered_only_for_received_messages_and_the_example_is_dated_now(logged_in, app, source):
    page = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/").content.decode()
    assert 'data-test-run="1"' not in page and "no message yet" in page
    assert str(timezone.now().year) in page and "2024-03-01" not in page
    assert "New mapping" in page and "New Mapping" not in page
    assert '<option value="track" selected>' in page  # the event type is the trigger's own

    inbox_receive(
        source=source, items=[{"type": "track", "event": "x", "userId": "u"}], format_kind="segment"
    )
    page = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/").content.decode()
    assert "Store this event" in page


def test_debugger_lists_latest_messages_with_outcome(logged_in, app, source):
    inbox_receive(source=source, items=[
        {"type": "track", "event": "Report", "messageId": "d-1", "userId": "u", "properties": {"shop": "s"}},
        {"type": "track", "messageId": "d-2", "userId": "u"},
        {"type": "page", "messageId": "d-3", "userId": "u"},
    ], format_kind="segment")  # fmt: skip
    inbox_process_pending()
    page = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/debugger/")
    html = page.content.decode()
    assert "data-refresh=" in html
    rows = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/debugger/rows/").content.decode()
    assert 'data-message-id="d-1" data-outcome="stored"' in rows
    assert 'data-message-id="d-2" data-outcome="rejected"' in rows and "event is required for track" in rows
    assert 'data-message-id="d-3" data-outcome="unmatched"' in rows
    assert "Mantle: Track → usage event" in rows
    # Each message opens to show it as received.
    detail = re.search(r'<tr class="message-detail" data-detail-of="d-1" hidden>.*?</tr>', rows, re.S).group(
        0
    )
    assert "&quot;shop&quot;: &quot;s&quot;" in detail and "data-toggle-next" in rows


def test_mapping_editor_builds_segment_directives_without_json_and_reads_them_back(logged_in, app, source):
    url = f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/"
    form = _form(
        kind_event_name="if", value_event_name="$.properties.plan", if_test_event_name="blank",
        if_then_event_name="{{event}} on {{properties.plan}}", if_else_event_name="$.event",
        kind_customer_id="replace", value_customer_id="$.properties.shop", replace_pattern_customer_id=".myshop",
        replace_replacement_customer_id="", replace_global_customer_id="on",
        kind_properties="json", value_properties='{"@merge": {"objects": [{"@path": "$.properties"}], "direction": "right"}}',
    )  # fmt: skip
    assert logged_in.post(url, form).status_code == 302
    mapping = Mapping.objects.get(source=source, name="Reports")
    assert mapping.fields == {
        "event_name": {"@if": {"blank": {"@path": "$.properties.plan"},
                               "then": {"@template": "{{event}} on {{properties.plan}}"}, "else": {"@path": "$.event"}}},
        "customer_id": {"@replace": {"pattern": ".myshop", "replacement": "", "global": True, "ignorecase": False,
                                     "value": {"@path": "$.properties.shop"}}},
        "properties": {"@merge": {"objects": [{"@path": "$.properties"}], "direction": "right"}},
    }  # fmt: skip
    html = logged_in.get(
        f"/apps/{app.public_id}/sources/{source.public_id}/mappings/{mapping.pk}/"
    ).content.decode()
    assert '<option value="if" selected>' in html and '<option value="replace" selected>' in html
    assert 'name="if_then_event_name" value="{{event}} on {{properties.plan}}"' in html
    assert 'name="replace_pattern_customer_id" value=".myshop"' in html
    assert "&quot;@merge&quot;" in html  # the JSON, to copy into Segment


def test_mapping_editor_warns_where_segment_reads_the_trigger_differently(logged_in, app, source):
    url = f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/"
    response = logged_in.post(url, _form(trigger='type = "track" and !(event = "Report")'), follow=True)
    assert response.status_code == 200
    assert "In Segment this trigger would mean something else" in response.content.decode()
    mapping = Mapping.objects.get(source=source, name="Reports")
    edit = logged_in.get(f"/apps/{app.public_id}/sources/{source.public_id}/mappings/{mapping.pk}/")
    assert 'data-testid="trigger-warnings"' in edit.content.decode()
    plain = logged_in.get(url).content.decode()  # the default trigger reads the same in Segment
    assert 'data-testid="trigger-warnings"' not in plain
