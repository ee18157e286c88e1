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
