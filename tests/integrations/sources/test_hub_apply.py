"""hub_apply declares sources and their mappings: idempotent, write key printed only on creation,
a bad trigger refused with its path and position."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from integrations.sources.models import Mapping, Source

pytestmark = pytest.mark.django_db

DOC = {
    "workspace": "Acme",
    "apps": [
        {
            "name": "Upsell",
            "sources": [
                {
                    "name": "Segment",
                    "shared_secret": "s3cret",
                    "mappings": [
                        {"preset": "mantle_track"},
                        {"preset": "kable_track", "name": "Kable",
                         "options": {"client_id_field": "context.groupId",
                                     "properties_mappings": {"segmentX": "kableX"}}},
                        {"name": "Signups", "trigger": 'type = "track" and event = "Signed Up"',
                         "action": "usage_event", "enabled": False,
                         "fields": {"event_name": {"literal": "signup"},
                                    "customer_id": {"path": "$.userId"}}},
                    ],
                },
                {"name": "Defaults"},
            ],
        }
    ],
}  # fmt: skip


def apply(doc, tmp_path):
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(doc))
    out = io.StringIO()
    call_command("hub_apply", str(path), stdout=out)
    return json.loads(out.getvalue())


def test_sources_and_mappings_are_declared_idempotently(tmp_path):
    first = apply(DOC, tmp_path)["apps"][0]["sources"]
    source = Source.objects.get(name="Segment")
    assert first[0]["write_key"] == source.write_key and source.shared_secret == "s3cret"
    assert [m["created"] for m in first[0]["mappings"]] == [True, True, True]
    mappings = list(source.mappings.all())
    assert [(m.name, m.enabled, m.position) for m in mappings] == [
        ("Mantle: Track → usage event", True, 1), ("Kable", True, 2), ("Signups", False, 3)]  # fmt: skip
    assert mappings[1].fields["customer_id"] == {"path": "$.context.groupId"}
    assert mappings[1].fields["properties"]["rename"] == {"segmentX": "kableX"}
    assert Source.objects.get(name="Defaults").mappings.count() == 3  # the default presets

    second = apply(DOC, tmp_path)["apps"][0]["sources"]
    assert "write_key" not in second[0] and second[0]["created"] is False
    assert [m["created"] for m in second[0]["mappings"]] == [False, False, False]
    assert Mapping.objects.count() == 6 and Source.objects.count() == 2


def test_a_bad_trigger_names_the_path_and_position(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["apps"][0]["sources"][0]["mappings"][2]["trigger"] = 'type = "track" and'
    with pytest.raises(CommandError, match=r"sources\[0\]\.mappings\[2\]\.trigger: .*position 19"):
        apply(doc, tmp_path)
    assert not Source.objects.exists()  # all or nothing


KIT_FIELDS = {
    "event_name": {"@if": {"exists": {"@path": "$.properties.plan"},
                           "then": {"@template": "{{event}} ({{properties.plan}})"},
                           "else": {"@case": {"operator": "lower", "value": {"@path": "$.event"}}}}},
    "customer_id": {"@replace": {"pattern": ".myshop", "replacement": "", "value": {"@path": "$.properties.shop"}}},
    "properties": {"@merge": {"objects": [{"source": "segment"}, {"@path": "$.properties"}], "direction": "right"}},
}  # fmt: skip


def test_a_mapping_kit_mapping_round_trips_and_runs(tmp_path):
    """A mapping written in Segment's mapping-kit is declared as is, read back unchanged, declared
    again idempotently, and runs on received messages."""
    from events.models import UsageEvent
    from integrations.sources.processing import inbox_process_pending
    from integrations.sources.receipt import inbox_receive

    doc = {"workspace": "Acme", "apps": [{"name": "Upsell", "sources": [{"name": "Segment", "mappings": [
        {"name": "From Segment", "trigger": 'type = "track"', "action": "usage_event", "fields": KIT_FIELDS}]}]}]}  # fmt: skip
    assert apply(doc, tmp_path)["apps"][0]["sources"][0]["mappings"][0]["created"] is True
    source = Source.objects.get(name="Segment")
    mapping = source.mappings.get(name="From Segment")
    assert mapping.fields == KIT_FIELDS
    assert apply(doc, tmp_path)["apps"][0]["sources"][0]["mappings"][0]["created"] is False
    assert source.mappings.get(name="From Segment").fields == KIT_FIELDS

    base = {"type": "track", "userId": "u"}
    inbox_receive(source=source, format_kind="segment", items=[
        {**base, "messageId": "k-1", "event": "Report Generated", "properties": {"shop": "a.myshopify.com", "plan": "pro"}},
        {**base, "messageId": "k-2", "event": "Report Generated", "properties": {"shop": "b.myshopify.com"}},
    ])  # fmt: skip
    inbox_process_pending()
    events = {e.event_id: e for e in UsageEvent.objects.all()}
    assert events["k-1"].event_name == "Report Generated (pro)"
    assert events["k-2"].event_name == "report generated"
    assert events["k-1"].properties == {"source": "segment", "shop": "a.myshopify.com", "plan": "pro"}
    assert events["k-2"].customer.platform_id == "bify.com"  # @replace: ".myshop" removed


def test_a_mapping_kit_mapping_segment_refuses_is_refused_with_its_path(tmp_path):
    doc = {"workspace": "Acme", "apps": [{"name": "Upsell", "sources": [{"name": "Segment", "mappings": [
        {"name": "Bad", "trigger": 'type = "track"', "action": "usage_event",
         "fields": {**KIT_FIELDS, "event_name": {"@path": "$.event", "@literal": "x"}}}]}]}]}  # fmt: skip
    with pytest.raises(CommandError, match=r"event_name.*one @-prefixed key"):
        apply(doc, tmp_path)
    assert not Source.objects.exists()


@pytest.mark.parametrize(
    ("sources", "error"),
    [
        ({"name": "Segment"}, r"\$\.apps\[0\]\.sources: must be a list of sources"),
        (["Segment"], r"\$\.apps\[0\]\.sources\[0\]: each source must be an object"),
        ([{"name": "Segment", "colour": "red"}], r"\$\.apps\[0\]\.sources\[0\]: unknown key\(s\) colour"),
        ([{"name": " "}], r"\$\.apps\[0\]\.sources\[0\]\.name: a source name is required"),
        ([{"name": "S", "mappings": {}}], r"\$\.apps\[0\]\.sources\[0\]\.mappings: must be a list"),
        ([{"name": "S", "mappings": ["x"]}], r"sources\[0\]\.mappings\[0\]: each mapping must be an object"),
        (
            [{"name": "S", "mappings": [{"preset": "mantle_track", "when": 1, "also": 2}]}],
            r"sources\[0\]\.mappings\[0\]: unknown key\(s\) also, when",
        ),
        ([{"name": "S", "enabled": "yes"}], r"sources\[0\]\.enabled: must be true or false"),
    ],
)
def test_a_malformed_sources_section_is_refused_with_its_path(tmp_path, sources, error):
    doc = {"workspace": "Acme", "apps": [{"name": "Upsell", "sources": sources}]}
    with pytest.raises(CommandError, match=error):
        apply(doc, tmp_path)
    assert not Source.objects.exists()
