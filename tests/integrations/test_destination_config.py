"""hub_apply declares destinations (Metronome, Kable, webhooks) and their subscriptions: matched by
name, idempotent, omitted fields kept, `null` clearing where it makes sense, secrets never
printed, errors naming the path."""

import base64
import io
import json
import os
import sys

import pytest
from django.core.management import CommandError, call_command

from hub.models import App
from integrations.models import Integration, Subscription
from tests.destination_standins import MetronomeStandIn
from tests.integrations.conftest import make_customer
from tests.integrations.test_destinations import forward_all, ingest

pytestmark = pytest.mark.django_db


def secret_generate() -> str:
    """A Standard Webhooks secret: whsec_ and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


HOOK_SECRET = secret_generate()
CUSTOMER_FROM_PLATFORM = {"path": "$.customer.platformId"}


def doc(**destinations_by_name) -> dict:
    return {
        "workspace": "Dest Co",
        "apps": [{"name": "Upsell"}, {"name": "Reports"}],
        "destinations": list(destinations_by_name.values()),
    }


def full_doc(hook_url: str) -> dict:
    return doc(
        metronome={
            "name": "Metronome", "kind": "metronome", "secret": "mt_secret_1", "apps": ["Upsell"],
            "subscriptions": [{"name": "Send event", "trigger": 'type = "track" and event = "api_call"',
                               "fields": {"transaction_id": {"path": "$.messageId"},
                                          "customer_id": CUSTOMER_FROM_PLATFORM,
                                          "timestamp": {"path": "$.timestamp"},
                                          "event_type": {"path": "$.event"}}}],
        },
        kable={"name": "Kable", "kind": "kable", "secret": "kcs_secret_1", "config": {"client_id": "kci_1"},
               "apps": ["Upsell", "Reports"]},
        hook={"name": "Hook", "kind": "webhook", "secret": HOOK_SECRET, "url": hook_url,
              "config": {"batch": True, "headers": {"X-Tenant": "acme"}}, "apps": ["Reports"],
              "subscriptions": [{"name": "Reports only", "trigger": 'type = "track" and event = "report"'}]},
    )  # fmt: skip


def hub_apply(document) -> tuple[dict, str]:
    """Run the command; return its parsed output and the raw text it printed."""
    out = io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(json.dumps(document))
    try:
        call_command("hub_apply", "-", stdout=out)
    finally:
        sys.stdin = stdin
    return json.loads(out.getvalue()), out.getvalue()


def state() -> dict:
    """Everything stored about destinations and subscriptions, to compare two runs."""
    return {
        i.name: (
            i.kind, i.secret, i.previous_secret, i.custom_host, i.config, i.enabled,
            sorted(i.apps.values_list("name", flat=True)),
            sorted(i.subscriptions.values_list("name", "action", "trigger", "fields", "enabled")),
        )
        for i in Integration.objects.exclude(kind="segment")
    }  # fmt: skip


def test_destinations_are_declared_idempotently_and_no_declared_secret_is_printed(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    document = full_doc("http://127.0.0.1:9/hooks/in")
    first, printed = hub_apply(document)
    for secret in ("mt_secret_1", "kcs_secret_1", HOOK_SECRET):
        assert secret not in printed
    by_name = {d["name"]: d for d in first["destinations"]}
    assert [d["created"] for d in first["destinations"]] == [True, True, True]
    assert "signing_secret" not in by_name["Hook"]  # declared, so not generated
    # A new destination gets its kind's default subscriptions; declared ones are added or changed.
    assert by_name["Metronome"]["subscriptions"] == [
        {"name": "Send event", "action": "sendEvent", "created": False}
    ]
    assert by_name["Hook"]["subscriptions"] == [{"name": "Reports only", "action": "send", "created": True}]
    stored = state()
    assert stored["Metronome"][:7] == ("metronome", "mt_secret_1", "", "", {}, True, ["Upsell"])
    ((_, _, trigger, fields, _),) = stored["Metronome"][7]
    assert (
        trigger == 'type = "track" and event = "api_call"' and fields["customer_id"] == CUSTOMER_FROM_PLATFORM
    )
    assert stored["Kable"][4] == {"client_id": "kci_1"} and stored["Kable"][6] == ["Reports", "Upsell"]
    hook = stored["Hook"]
    assert hook[1] == HOOK_SECRET and hook[3] == "http://127.0.0.1:9/hooks/in"
    assert [s[0] for s in hook[7]] == ["Reports only", "Send"]
    assert App.objects.get(name="Upsell").forward_usage_events

    second, printed = hub_apply(document)
    assert state() == stored
    assert [d["id"] for d in second["destinations"]] == [d["id"] for d in first["destinations"]]
    assert not any(d["created"] for d in second["destinations"])
    assert not any(s["created"] for d in second["destinations"] for s in d["subscriptions"])
    assert Integration.objects.count() == 3 and Subscription.objects.count() == 4


def test_a_webhook_without_a_secret_gets_one_printed_once(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    document = doc(hook={"name": "Hook", "kind": "webhook", "url": "http://127.0.0.1:9/in"})
    first, _ = hub_apply(document)
    generated = first["destinations"][0]["signing_secret"]
    assert generated.startswith("whsec_") and Integration.objects.get(name="Hook").secret == generated
    second, printed = hub_apply(document)
    assert generated not in printed and "signing_secret" not in second["destinations"][0]


def test_omitted_fields_are_kept_and_null_clears_url_apps_and_config(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    full = full_doc("http://127.0.0.1:9/hooks/in")
    hub_apply(full)
    before = state()
    # Only names: nothing changes.
    hub_apply(doc(m={"name": "Metronome"}, k={"name": "Kable"}, h={"name": "Hook", "subscriptions": [
        {"name": "Reports only"}, {"name": "Send", "enabled": False}]}))  # fmt: skip
    after = state()
    assert after["Metronome"] == before["Metronome"] and after["Kable"] == before["Kable"]
    hook_subscriptions = dict((s[0], s) for s in after["Hook"][7])
    assert hook_subscriptions["Send"][4] is False  # the one field declared
    assert hook_subscriptions["Reports only"] == dict((s[0], s) for s in before["Hook"][7])["Reports only"]
    assert after["Hook"][:7] == before["Hook"][:7]

    # null clears the URL (the vendor's host), the apps and the config; a webhook needs its URL.
    hub_apply(doc(m={"name": "Metronome", "url": "http://127.0.0.1:9"}))
    assert state()["Metronome"][3] == "http://127.0.0.1:9"
    hub_apply(
        doc(
            m={"name": "Metronome", "url": None, "apps": None},
            k={"name": "Kable", "apps": None},
            h={"name": "Hook", "config": None},
        )
    )
    cleared = state()
    assert cleared["Metronome"][3] == "" and cleared["Metronome"][6] == []
    assert cleared["Hook"][4] == {} and cleared["Hook"][1] == HOOK_SECRET
    assert not App.objects.get(name="Upsell").forward_usage_events  # no destination of it left
    with pytest.raises(CommandError, match=r"\$\.destinations\[0\]: Enter the URL"):
        hub_apply(doc(h={"name": "Hook", "url": None}))


def test_a_new_secret_replaces_the_stored_one_and_the_same_one_changes_nothing(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    hub_apply(full_doc("http://127.0.0.1:9/hooks/in"))
    Integration.objects.filter(name="Metronome").update(needs_attention=True, attention_reason="401")
    hub_apply(doc(m={"name": "Metronome", "secret": "mt_secret_1"}, h={"name": "Hook", "secret": None}))
    metronome = Integration.objects.get(name="Metronome")
    assert metronome.needs_attention  # the same token: still refused, still flagged
    assert Integration.objects.get(name="Hook").secret == HOOK_SECRET
    new_hook_secret = secret_generate()
    _, printed = hub_apply(
        doc(m={"name": "Metronome", "secret": "mt_secret_2"}, h={"name": "Hook", "secret": new_hook_secret})
    )
    assert "mt_secret_2" not in printed and new_hook_secret not in printed
    metronome.refresh_from_db()
    assert metronome.secret == "mt_secret_2" and not metronome.needs_attention
    hook = Integration.objects.get(name="Hook")
    assert (hook.secret, hook.previous_secret) == (new_hook_secret, HOOK_SECRET)  # a rotation


@pytest.mark.parametrize(
    ("destinations", "path", "message"),
    [
        ({"x": 1}, "$.destinations", "must be a list"),
        ([{"name": "M", "kind": "segment", "secret": "t"}], "$.destinations[0].kind", "must be one of"),
        ([{"name": "M", "secret": "t"}], "$.destinations[0].kind", "must be one of"),
        ([{"name": "M", "kind": "metronome"}], "$.destinations[0]", "Enter the Metronome credential"),
        ([{"name": "K", "kind": "kable", "secret": "s"}], "$.destinations[0]", "Kable client id"),
        ([{"name": "M", "kind": "metronome", "secret": "t", "apps": ["Nope"]}], "$.destinations[0].apps",
         "no app named Nope"),
        ([{"name": "M", "kind": "metronome", "secret": "t", "token": "t"}], "$.destinations[0]", "unknown key"),
        ([{"name": "M", "kind": "metronome", "secret": "t", "enabled": None}], "$.destinations[0].enabled",
         "cannot be null"),
        ([{"name": "M", "kind": "metronome", "secret": "t", "subscriptions": [{"name": "S", "action": "nope"}]}],
         "$.destinations[0].subscriptions[0].action", "must be one of sendEvent"),
        ([{"name": "M", "kind": "metronome", "secret": "t", "subscriptions": [{"name": "S", "trigger": "type ="}]}],
         "$.destinations[0].subscriptions[0].trigger", "Trigger"),
        ([{"name": "M", "kind": "metronome", "secret": "t",
           "subscriptions": [{"name": "S", "fields": {"nope": {"path": "$.event"}}}]}],
         "$.destinations[0].subscriptions[0].fields", "unknown target"),
        ([{"name": "M", "kind": "metronome", "secret": "t",
           "subscriptions": [{"name": "Send event", "trigger": None}]}],
         "$.destinations[0].subscriptions[0].trigger", "cannot be null"),
    ],
)  # fmt: skip
def test_invalid_destinations_name_the_path_and_change_nothing(destinations, path, message):
    document = {"workspace": "Dest Co", "apps": [{"name": "Upsell"}], "destinations": destinations}
    pattern = path.replace("$", r"\$").replace("[", r"\[").replace(".", r"\.") + ": .*" + message
    with pytest.raises(CommandError, match=pattern):
        hub_apply(document)
    assert not Integration.objects.exists() and not App.objects.exists()


def test_a_destination_cannot_change_kind_nor_share_a_name_with_a_segment_integration():
    hub_apply(doc(m={"name": "Metronome", "kind": "metronome", "secret": "t"}))
    with pytest.raises(CommandError, match=r"\$\.destinations\[0\]\.kind: is metronome"):
        hub_apply(doc(m={"name": "Metronome", "kind": "kable"}))
    hub_apply({"workspace": "Dest Co", "integrations": [{"name": "Seg", "write_key": "wk"}]})
    with pytest.raises(CommandError, match=r"\$\.destinations\[0\]\.name: 'Seg' is a segment integration"):
        hub_apply(doc(s={"name": "Seg", "kind": "metronome", "secret": "t"}))
    with pytest.raises(
        CommandError, match=r"\$\.integrations\[0\]\.name: 'Metronome' is a metronome destination"
    ):
        hub_apply({"workspace": "Dest Co", "integrations": [{"name": "Metronome", "write_key": "wk"}]})
    assert Integration.objects.get(name="Metronome").write_key == ""


@pytest.mark.django_db(transaction=True)
def test_a_declared_destination_forwards_with_its_declared_mapping(fast_retries):
    server = MetronomeStandIn(token="mt_secret_1").start()
    try:
        document = doc(m={"name": "Metronome", "kind": "metronome", "secret": "mt_secret_1", "url": server.url,
                          "apps": ["Upsell"], "subscriptions": [
                              {"name": "Send event", "fields": {"transaction_id": {"path": "$.messageId"},
                               "customer_id": CUSTOMER_FROM_PLATFORM, "timestamp": {"path": "$.timestamp"},
                               "event_type": {"path": "$.event"}}}]})  # fmt: skip
        hub_apply(document)
        app = App.objects.get(name="Upsell")
        ingest(app, make_customer(app, "shop-7"), ("api_call", "ev-1", {"n": 1}))
        forward_all()
        assert not server.violations
        (event,) = server.items
        assert (event["transaction_id"], event["customer_id"], event["properties"]) == ("ev-1", "shop-7", {})
    finally:
        server.stop()
