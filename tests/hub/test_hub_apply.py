"""Configuration as code: hub_apply is idempotent and prints a secret only when it creates one."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from hub.models import ApiKey, App, Membership, Workspace

pytestmark = pytest.mark.django_db

DOC = {
    "workspace": "Acme",
    "owner_email": "ops@example.com",
    "apps": [{"name": "Upsell", "api_keys": ["ci"]}],
}


def apply(doc, tmp_path):
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(doc))
    out = io.StringIO()
    call_command("hub_apply", str(path), stdout=out)
    return json.loads(out.getvalue())


def test_apply_twice_gives_same_objects_and_no_second_secret(tmp_path):
    first = apply(DOC, tmp_path)
    assert first["workspace"]["name"] == "Acme" and first["workspace"]["created"] is True
    app = first["apps"][0]
    assert app["id"] == str(App.objects.get(name="Upsell").public_id)
    secret = app["api_keys"][0]["secret"]
    assert secret.startswith("hub_live_")
    assert Membership.objects.get(user__email="ops@example.com").role == "owner"

    second = apply(DOC, tmp_path)
    assert second["apps"][0]["id"] == app["id"]
    assert "secret" not in second["apps"][0]["api_keys"][0]
    assert secret not in json.dumps(second)
    assert Workspace.objects.count() == 1 and App.objects.count() == 1 and ApiKey.objects.count() == 1


def test_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(DOC)))
    out = io.StringIO()
    call_command("hub_apply", "-", stdout=out)
    assert json.loads(out.getvalue())["apps"][0]["name"] == "Upsell"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "JSON object"),
        ({"apps": []}, "$.workspace"),
        ({"workspace": "A", "apps": [{"api_keys": ["x"]}]}, "$.apps[0].name"),
        ({"workspace": "A", "apps": [{"name": "x", "api_keys": [3]}]}, "$.apps[0].api_keys[0]"),
        ({"workspace": "A", "bogus": 1}, "unknown key"),
    ],
)
def test_invalid_documents_are_clear_errors_and_change_nothing(tmp_path, doc, message):
    with pytest.raises(CommandError, match=message.replace("$", r"\$").replace("[", r"\[")):
        apply(doc, tmp_path)
    assert Workspace.objects.count() == 0


def test_invalid_json_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    with pytest.raises(CommandError, match="invalid JSON at line 1"):
        call_command("hub_apply", str(path))


def _app_doc(**sections):
    return {"workspace": "A", "apps": [{"name": "x", **sections}]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_app_doc(plans={}), "$.apps[0].plans: must be a list of plans"),
        (_app_doc(plans=["Pro"]), "$.apps[0].plans[0]: each plan must be an object"),
        (_app_doc(plans=[{"name": "Pro", "cost": 1}]), "$.apps[0].plans[0]: unknown key(s) cost"),
        ({"workspace": "A", "integrations": {}}, "$.integrations: must be a list of integrations"),
        ({"workspace": "A", "integrations": [1]}, "$.integrations[0]: each integration must be an object"),
        ({"workspace": "A", "integrations": [{"b": 1, "a": 2}]}, "$.integrations[0]: unknown key(s) a, b"),
        ({"workspace": "A", "destinations": "M"}, "$.destinations: must be a list of destinations"),
        ({"workspace": "A", "destinations": [[]]}, "$.destinations[0]: each destination must be an object"),
        (
            {
                "workspace": "A",
                "destinations": [{"name": "M", "kind": "metronome", "secret": "t", "subscriptions": [0]}],
            },
            "$.destinations[0].subscriptions[0]: each subscription must be an object",
        ),
        (
            {
                "workspace": "A",
                "destinations": [
                    {
                        "name": "M",
                        "kind": "metronome",
                        "secret": "t",
                        "subscriptions": [{"x": 1}],
                    }
                ],
            },
            "$.destinations[0].subscriptions[0]: unknown key(s) x",
        ),
    ],
)
def test_a_section_that_is_not_a_list_of_known_objects_is_a_clear_error(tmp_path, doc, message):
    with pytest.raises(CommandError) as raised:
        apply(doc, tmp_path)
    assert message in str(raised.value)
    assert Workspace.objects.count() == 0
