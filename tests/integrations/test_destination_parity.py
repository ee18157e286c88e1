"""The same bytes as Segment: for each destination kind, Segment's own action code (npm
@segment/action-destinations, run by @segment/actions-core's Destination in Node with its default
subscription and mapping) and the hub forward the same usage event, customer or contact, each to
a local capture server (Segment's own sendTrack / sendIdentify / sendGroup return their batch
instead), and the requests are compared field for field. Where they differ by design (listed in
docs/destinations.md, "The same bytes as Segment"), the difference is asserted."""

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from events.models import UsageEvent
from events.services import usage_events_ingest
from hub.models import Customer, CustomerForward
from hub.services.customers import customer_identify
from integrations.connectors import MessageRefused, connector_for
from integrations.destinations import destination_save, subscription_save
from integrations.forwarding import contact_message, customer_message, event_message
from integrations.sources.mapping_engine import mapping_compile, mapping_values
from integrations.vendors.segment.connector import LIBRARY
from tests.destination_standins import (
    ChartMogulStandIn,
    MantleStandIn,
    MetronomeStandIn,
    StandIn,
    WebhookReceiver,
)
from tests.integrations.conftest import make_customer
from tests.integrations.test_destinations_customers import forward_all
from tests.node_runner import run_node_script

pytestmark = pytest.mark.django_db(transaction=True)

TRACK = 'type = "track"'
SEND_EVENT = connector_for("metronome").actions["sendEvent"]
SEND = connector_for("webhook").actions["send"]
CHARTMOGUL = connector_for("chartmogul")
SEND_CUSTOMER, SEND_CONTACT = CHARTMOGUL.actions["sendCustomer"], CHARTMOGUL.actions["sendContact"]
SEGMENT = connector_for("segment")
PUSH_EVENT, IDENTIFY = (
    connector_for("mantle").actions["pushEvent"],
    connector_for("mantle").actions["identify"],
)
# What `event_message` reads of a stored event.
EVENT_FIELDS = (
    "event_id", "event_name", "timestamp", "properties", "customer__public_id", "customer__platform_id",
    "customer__myshopify_domain", "customer__name", "customer__custom_fields",
)  # fmt: skip


class Capture(StandIn):
    """Takes any POST to `path` and keeps it (Segment's webhook requests)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def check(self, headers: dict, raw: bytes):
        return 200, {"ok": True}, [json.loads(raw)]


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def servers():
    started: list[StandIn] = []

    def start(server: StandIn) -> StandIn:
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def stored_messages(app, event_ids: list[str]) -> list[dict]:
    """The track-call view (`event_message`) of the stored events, in `event_ids` order."""
    rows = {r["event_id"]: r for r in UsageEvent.objects.filter(app=app).values(*EVENT_FIELDS)}
    return [event_message(rows[event_id]) for event_id in event_ids]


def segment_run(capture_url: str, cases: list[dict]) -> dict:
    out = run_node_script("destination_parity.mjs", {"CASES": json.dumps(cases), "CAPTURE_URL": capture_url})
    for case in cases:
        assert out["results"][case["name"]]["ok"], out["results"][case["name"]]
    return out


def hub_fields(segment_mapping: dict) -> dict:
    """Segment's `{"@path": "$.x"}` defaults in the hub's mapping syntax (`$.` is the root)."""
    return {
        name: {"path": "$" if spec["@path"] == "$." else spec["@path"]}
        for name, spec in segment_mapping.items()
        if isinstance(spec, dict) and "@path" in spec
    }


# Events as a Mantle client sends them: an offset and sub-millisecond timestamp, nested, unicode
# and empty properties. (An integer-valued float such as 1.0 is the one thing that would print
# differently, `1.0` against JavaScript's `1`: the same JSON number, so it is left out to keep the
# byte comparison.)
EVENTS = [
    ("api_call", "ev-1", "2024-03-01T14:00:00.123456+02:00", {"tokens": 12, "model": "gpt-ø", "ok": True}),
    (
        "report.generated",
        "ev-2",
        "2024-03-01T12:00:01Z",
        {"rows": 7, "meta": {"tags": ["a", "b"], "x": None}},
    ),
    ("api_call", "ev-3", "2024-03-01T12:00:02.5Z", {}),
]


def ingest_events(app, customer, events=EVENTS):
    raw = [
        {"eventName": n, "eventId": i, "customerId": customer.platform_id, "timestamp": t, "properties": p}
        for n, i, t, p in events
    ]
    usage_events_ingest(app=app, raw_events=raw)
    return [i for _, i, _, _ in events]


def test_the_track_call_view_is_segments_track_call(app):
    """What the hub feeds a subscription is the track call a Segment source would carry for the
    event (userId and context.groupId the hub's customer id), plus the hub's `customer` object."""
    customer = make_customer(app, "shop-1", name="Shop One")
    ids = ingest_events(app, customer, EVENTS[:1])
    (message,) = stored_messages(app, ids)
    customer_id = str(customer.public_id)
    assert {k: v for k, v in message.items() if k != "customer"} == {
        "type": "track",
        "event": "api_call",
        "messageId": "ev-1",
        "timestamp": "2024-03-01T12:00:00.123Z",  # UTC, milliseconds: dayjs.utc().toISOString()
        "userId": customer_id,
        "properties": {"tokens": 12, "model": "gpt-ø", "ok": True},
        "context": {"groupId": customer_id},
    }
    assert message["customer"] == {
        "id": customer_id, "platformId": "shop-1", "myshopifyDomain": None, "name": "Shop One",
        "customFields": {},
    }  # fmt: skip


@pytest.mark.node
def test_metronome_sends_what_segments_send_event_sends(app, workspace, servers, fast_retries):
    token = "mt_parity_token"
    hub_server = servers(MetronomeStandIn(token=token))
    segment_server = servers(MetronomeStandIn(token=token))
    destination_save(workspace=workspace, kind="metronome", name="Metronome", secret=token,
                     url=hub_server.url, apps=[app])  # fmt: skip
    ids = ingest_events(app, make_customer(app, "shop-1"))
    forward_all()
    messages = stored_messages(app, ids)
    out = segment_run(
        segment_server.url,
        [
            {"name": m["messageId"], "destination": "metronome", "action": "sendEvent",
             "settings": {"apiToken": token}, "events": [m]}
            for m in messages
        ],
    )  # fmt: skip

    # The default subscription is Segment's preset: the same trigger and the same paths.
    defaults = out["defaults"]["metronome"]
    assert SEND_EVENT.trigger == defaults["subscribe"] == TRACK
    assert SEND_EVENT.fields == hub_fields(defaults["mapping"])

    # Both pass the strict stand-in and carry the same events, field for field.
    assert not hub_server.violations and not segment_server.violations
    hub_events = {e["transaction_id"]: e for e in hub_server.items}
    segment_events = {e["transaction_id"]: e for e in segment_server.items}
    assert list(segment_events) == ids and sorted(hub_events) == ids
    for event_id in ids:
        assert hub_events[event_id] == segment_events[event_id], event_id

    # By design, Segment sends one event per request and the hub arrays of up to 100: the hub's
    # body is exactly Segment's single-event bodies joined, byte for byte.
    assert [len(json.loads(body)) for _, body in segment_server.requests] == [1, 1, 1]
    ((hub_headers, hub_body),) = hub_server.requests
    assert hub_body == b"[" + b",".join(body[1:-1] for _, body in segment_server.requests) + b"]"

    # Auth and content type alike; only the User-Agent names the sender.
    for headers, _ in segment_server.requests:
        assert headers["authorization"] == hub_headers["authorization"] == f"Bearer {token}"
        assert headers["content-type"] == hub_headers["content-type"] == "application/json"
        assert headers["user-agent"] == "Segment (Actions)" != hub_headers["user-agent"]

    # The timestamp as the app sent it (an offset, microseconds) comes out of Segment's dayjs as
    # the hub stores and prints it: UTC, milliseconds.
    raw = dict(messages[0], timestamp=EVENTS[0][2])
    segment_run(
        segment_server.url,
        [{"name": "raw", "destination": "metronome", "action": "sendEvent",
          "settings": {"apiToken": token}, "events": [raw]}],
    )  # fmt: skip
    assert segment_server.items[-1] == hub_events["ev-1"]
    assert hub_events["ev-1"]["timestamp"] == "2024-03-01T12:00:00.123Z"


@pytest.mark.node
def test_a_webhook_sends_what_segments_webhook_send_sends(app, workspace, servers, fast_retries):
    secret, shared = whsec(), "seg-shared-secret"
    receiver = servers(WebhookReceiver(secret))
    capture = servers(Capture("/hooks/in"))
    hook = destination_save(workspace=workspace, kind="webhook", name="Hook", secret=secret,
                            url=receiver.url + "/hooks/in", apps=[app],
                            config={"headers": {"X-Tenant": "acme"}})  # fmt: skip
    customer = make_customer(app, "shop-1", name="Shop One")
    ids = ingest_events(app, customer, EVENTS[:1])
    forward_all()
    (message,) = stored_messages(app, ids)
    mapping = {"url": capture.url + "/hooks/in", "headers": {"X-Tenant": "acme"}}
    out = segment_run(
        capture.url,
        [{"name": "single", "destination": "webhook", "action": "send", "subscribe": TRACK,
          "settings": {"sharedSecret": shared}, "mapping": mapping, "events": [message]}],
    )  # fmt: skip

    # Segment's Webhook has no default subscription (the user writes one); the hub's is track
    # calls. The data is the whole event in both.
    defaults = out["defaults"]["webhook"]
    assert defaults["subscribe"] is None and SEND.trigger == TRACK
    assert defaults["mapping"]["method"] == "POST"
    assert SEND.fields == hub_fields(defaults["mapping"]) == {"data": {"path": "$"}}

    # The same body, byte for byte, and the user's headers in both.
    ((segment_headers, segment_body),) = capture.requests
    ((hub_headers, hub_body),) = receiver.requests
    assert hub_body == segment_body
    assert json.loads(hub_body) == message
    for headers in (segment_headers, hub_headers):
        assert headers["content-type"] == "application/json" and headers["x-tenant"] == "acme"

    # By design, the signatures differ: Segment's X-Signature is the hex HMAC-SHA1 of the body
    # with the shared secret; the hub signs per Standard Webhooks (id, timestamp, HMAC-SHA256).
    assert segment_headers["x-signature"] == hmac.new(shared.encode(), segment_body, hashlib.sha1).hexdigest()
    assert not any(h.startswith("webhook-") for h in segment_headers)
    assert "x-signature" not in hub_headers
    Webhook(secret).verify(hub_body, hub_headers)
    assert not receiver.violations

    # Batches: both send a JSON array of the events' data, byte for byte. Segment's X-Signature
    # then covers only the first event's data; the hub's signature covers the whole body.
    destination_save(workspace=workspace, kind="webhook", name="Hook", integration=hook,
                     url=receiver.url + "/hooks/in", apps=[app],
                     config={"headers": {"X-Tenant": "acme"}, "batch": True})  # fmt: skip
    ids = ingest_events(app, customer, EVENTS[1:])
    forward_all()
    messages = stored_messages(app, ids)
    segment_run(
        capture.url,
        [{"name": "batch", "destination": "webhook", "action": "send", "subscribe": TRACK, "batch": True,
          "settings": {"sharedSecret": shared}, "mapping": mapping, "events": messages}],
    )  # fmt: skip
    segment_headers, segment_body = capture.requests[1]
    hub_headers, hub_body = receiver.requests[1]
    assert json.loads(hub_body) == json.loads(segment_body) == messages
    assert hub_body == segment_body
    first = json.dumps(messages[0], separators=(",", ":"), ensure_ascii=False).encode()
    assert segment_headers["x-signature"] == hmac.new(shared.encode(), first, hashlib.sha1).hexdigest()
    Webhook(secret).verify(hub_body, hub_headers)
    assert not receiver.violations


# --- Customers and contacts: ChartMogul, Mantle, and Segment's own actions ----------------------


def changes_of(app, **identify) -> tuple[dict, dict]:
    """A customer change (with one contact) as the group call and the identify call the hub's
    subscriptions read (`customer_message`, `contact_message` of the CustomerForward rows)."""
    customer_identify(app=app, **identify)
    rows = {row.kind: row for row in CustomerForward.objects.filter(app=app).order_by("id")}
    return customer_message(rows["customer"]), contact_message(rows["contact"])


SHOP = {
    "platform_id": "shop-1", "myshopify_domain": "shop-1.myshopify.com", "name": "Acme Ø",
    "email": "billing@acme.test", "platform_plan_name": "Pro", "custom_fields": {"crm": "A-1", "seats": 3},
    "created_at": datetime(2024, 2, 1, 9, 30, tzinfo=UTC),
    "contacts": [{"email": "ann@acme.test", "name": "Ann Lee", "label": "owner", "phone": "+1 555"}],
}  # fmt: skip


@pytest.mark.node
def test_chartmogul_sends_what_segments_send_customer_and_send_contact_send(
    app, workspace, servers, fast_retries
):
    hub_server = servers(ChartMogulStandIn())
    segment_server = servers(ChartMogulStandIn())
    destination_save(workspace=workspace, kind="chartmogul", name="ChartMogul",
                     secret=hub_server.url + ChartMogulStandIn.path, apps=[app])  # fmt: skip
    group, identify = changes_of(app, **SHOP)
    forward_all()
    settings = {"chartmogul_webhook_url": segment_server.url + ChartMogulStandIn.path}
    out = segment_run(
        segment_server.url,
        [
            {"name": "customer", "destination": "chartmogul", "action": "sendCustomer",
             "settings": settings, "events": [group]},
            {"name": "contact", "destination": "chartmogul", "action": "sendContact",
             "settings": settings, "events": [identify]},
        ],
    )  # fmt: skip

    # The defaults are Segment's: the same triggers, the same paths, the same literal types.
    for action in (SEND_CUSTOMER, SEND_CONTACT):
        defaults = out["defaults"][f"chartmogul/{action.name}"]
        assert action.trigger == defaults["subscribe"]
        assert {k: v for k, v in action.fields.items() if "object" not in v} == {
            **hub_fields(defaults["mapping"]),
            "type": {"literal": defaults["mapping"]["type"]},
        }
        objects = {k: v for k, v in defaults["mapping"].items() if k not in hub_fields(defaults["mapping"])}
        objects.pop("type")
        assert {k: v["object"] for k, v in action.fields.items() if "object" in v} == {
            name: hub_fields(spec) for name, spec in objects.items()
        }

    # Both pass the strict stand-in with the same two requests, byte for byte.
    assert not hub_server.violations and not segment_server.violations
    assert len(hub_server.requests) == len(segment_server.requests) == 2
    by_type = {json.loads(body)["type"]: (headers, body) for headers, body in segment_server.requests}
    for hub_headers, hub_body in hub_server.requests:
        segment_headers, segment_body = by_type[json.loads(hub_body)["type"]]
        assert hub_body == segment_body
        assert hub_headers["content-type"] == segment_headers["content-type"] == "application/json"
    customer = next(json.loads(b) for _, b in hub_server.requests if b"Send Customer" in b)
    assert customer["created_at"] == "2024-02-01T09:30:00+00:00" and customer["name"] == "Acme Ø"
    contact = next(json.loads(b) for _, b in hub_server.requests if b"Send Contact" in b)
    assert contact["company"] == {"id": group["groupId"], "name": "Acme Ø"}

    # Segment's quirks, kept: a contact without a user id, and one with nothing of interest (five
    # fields or fewer, the company dropped when it has no id), are refused by both.
    bare = {**identify, "traits": {"company": {"name": "No id"}}}
    for case in ({**identify, "userId": None}, bare):
        run = run_node_script("destination_parity.mjs", {"CAPTURE_URL": segment_server.url, "CASES": json.dumps(
            [{"name": "refused", "destination": "chartmogul", "action": "sendContact", "settings": settings,
              "events": [case]}])})  # fmt: skip
        assert not run["results"]["refused"]["ok"]
        compiled = mapping_compile(name="x", trigger=SEND_CONTACT.trigger, action=SEND_CONTACT.name,
                                   fields=SEND_CONTACT.fields, targets=SEND_CONTACT.targets)  # fmt: skip
        with pytest.raises(MessageRefused):
            CHARTMOGUL.action_message(integration=None, action=SEND_CONTACT,
                                      values=mapping_values(compiled, case))  # fmt: skip


@pytest.mark.node
def test_mantle_sends_what_segments_identify_and_push_event_send(app, workspace, servers, fast_retries):
    hub_server = servers(MantleStandIn(app_id="app_9", key="key_9"))
    segment_server = servers(MantleStandIn(app_id="app_9", key="key_9"))
    destination_save(workspace=workspace, kind="mantle", name="Mantle", secret="key_9",
                     url=hub_server.url + "/v1", apps=[app], config={"app_id": "app_9"})  # fmt: skip
    group, _ = changes_of(app, **SHOP)
    ids = ingest_events(app, Customer.objects.get(app=app, platform_id="shop-1"))
    forward_all()
    messages = stored_messages(app, ids)
    settings = {"appId": "app_9", "apiKey": "key_9"}
    # What Segment's actions leave to the user (no default), filled in with the hub's defaults.
    identify_mapping = {"platformId": {"@path": "$.traits.platformId"},
                        "myshopifyDomain": {"@path": "$.traits.myshopifyDomain"}}  # fmt: skip
    out = segment_run(
        segment_server.url,
        [
            {"name": "identify", "destination": "mantle", "action": "identify", "settings": settings,
             "subscribe": IDENTIFY.trigger, "events": [group],
             "mapping": {**identify_mapping, "customFields": {"@path": "$.traits.customFields"}}},
            {"name": "pushEvent", "destination": "mantle", "action": "pushEvent", "settings": settings,
             "batch": True, "events": messages, "mapping": {"customerId": {"@path": "$.customer.platformId"}}},
            {"name": "identify-defaults", "destination": "mantle", "action": "identify", "settings": settings,
             "subscribe": IDENTIFY.trigger, "events": [group], "mapping": identify_mapping},
        ],
    )  # fmt: skip

    # pushEvent: Segment's trigger and paths (its eventName / eventId are the wire's event_name /
    # event_id); the customer id, which Segment leaves to the user, is the shop's platform id.
    defaults = out["defaults"]["mantle/pushEvent"]
    assert PUSH_EVENT.trigger == defaults["subscribe"] == TRACK
    wire_names = {"eventName": "event_name", "eventId": "event_id"}
    segment_paths = {wire_names.get(k, k): v for k, v in hub_fields(defaults["mapping"]).items()}
    assert PUSH_EVENT.fields == {**segment_paths, "customerId": {"path": "$.customer.platformId"}}
    assert "customerId" not in defaults["mapping"]

    # identify: Segment's paths but for three the hub's group call names differently or Segment
    # leaves to the user; by design, the hub's customers are group calls (its identify calls are
    # contacts), so the trigger is `type = "group"` where Segment's is `type = "identify"`.
    defaults = out["defaults"]["mantle/identify"]
    assert defaults["subscribe"] == 'type = "identify"' and IDENTIFY.trigger == 'type = "group"'
    assert defaults["mapping"]["customFields"] == {"@path": "$.traits.custom_fields"}
    assert IDENTIFY.fields == {
        **hub_fields(defaults["mapping"]), "platform": {"path": "$.traits.platform"},
        "platformId": {"path": "$.traits.platformId"}, "myshopifyDomain": {"path": "$.traits.myshopifyDomain"},
        "customFields": {"path": "$.traits.customFields"},
    }  # fmt: skip

    # The same requests, byte for byte: one identify, and the events in one `{"events": [...]}`
    # (Segment's batch; Segment's single event would be a bare object, which the hub never sends).
    assert not hub_server.violations and not segment_server.violations
    hub_requests = {json.loads(b).get("platformId", "events"): (h, b) for h, b in hub_server.requests}
    segment_requests = {
        json.loads(b).get("platformId", "events"): (h, b) for h, b in segment_server.requests[:2]
    }
    assert len(hub_server.requests) == 2 and len(segment_server.requests) == 3
    for key in ("shop-1", "events"):
        (hub_headers, hub_body), (segment_headers, segment_body) = hub_requests[key], segment_requests[key]
        assert hub_body == segment_body, key
        for name in ("x-mantle-app-id", "x-mantle-app-api-key", "content-type"):
            assert hub_headers[name] == segment_headers[name], name
    identify = json.loads(hub_requests["shop-1"][1])
    assert identify["platform"] == "shopify" and identify["customFields"] == {"crm": "A-1", "seats": 3}
    assert [e["event_id"] for e in json.loads(hub_requests["events"][1])["events"]] == ids

    # Segment's own default for customFields (`$.traits.custom_fields`) finds nothing in the
    # hub's group call: the last Segment request, with that default, has no customFields.
    assert "customFields" not in json.loads(segment_server.requests[-1][1])


@pytest.mark.node
def test_segment_sends_the_batch_segments_own_track_identify_and_group_return(app, segment, standin):
    """Segment's sendTrack / sendIdentify / sendGroup make no request: they return `{batch: [call]}`
    for Segment's platform to send. The hub sends the same calls to /v1/batch; compared byte for
    byte, but for the `context.library` the hub adds as the sender."""
    for s in segment.subscriptions.all():
        subscription_save(integration=segment, subscription=s, name=s.name, action=s.action,
                          trigger=s.trigger, fields=s.fields, enabled=True)  # fmt: skip
    group, identify = changes_of(app, **SHOP)
    ids = ingest_events(app, Customer.objects.get(app=app, platform_id="shop-1"))
    forward_all()
    tracks = stored_messages(app, ids)
    settings = {"source_write_key": segment.write_key}
    # Segment's actions default only message_id and consent; the rest, the hub's defaults.
    mappings = {
        "sendTrack": {"user_id": {"@path": "$.userId"}, "event_name": {"@path": "$.event"},
                      "timestamp": {"@path": "$.timestamp"}, "group_id": {"@path": "$.context.groupId"},
                      "properties": {"@path": "$.properties"}},
        "sendIdentify": {"user_id": {"@path": "$.userId"}, "timestamp": {"@path": "$.timestamp"},
                         "group_id": {"@path": "$.context.groupId"}, "traits": {"@path": "$.traits"}},
        "sendGroup": {"user_id": {"@path": "$.userId"}, "group_id": {"@path": "$.groupId"},
                      "timestamp": {"@path": "$.timestamp"}, "traits": {"@path": "$.traits"}},
    }  # fmt: skip
    cases = [("sendTrack", m["messageId"], m) for m in tracks]
    cases += [("sendIdentify", identify["messageId"], identify), ("sendGroup", group["messageId"], group)]
    out = segment_run(
        standin.url,
        [{"name": name, "destination": "segment", "action": action, "settings": settings,
          "mapping": mappings[action], "events": [event]} for action, name, event in cases],
    )  # fmt: skip

    # The triggers are Segment's; the hub's paths are those a user fills in Segment's mapping.
    for action, _, _ in cases:
        defaults = out["defaults"][f"segment/{action}"]
        assert SEGMENT.actions[action].trigger == defaults["subscribe"]
        assert defaults["mapping"] == {"message_id": {"@path": "$.messageId"},
                                       "consent": {"@path": "$.context.consent"}}  # fmt: skip

    def segment_batch(name: str) -> list[dict]:
        (executed,) = [r for r in out["results"][name]["results"] if r.get("output") == "Action Executed"]
        return executed["data"]["batch"]

    assert not standin.violations
    library = b',"library":' + json.dumps(LIBRARY, separators=(",", ":")).encode()
    sent = {json.loads(raw)["messageId"]: raw for raw in standin.raw_messages()}
    assert sorted(sent) == sorted(name for _, name, _ in cases)
    for _, name, _ in cases:
        (call,) = segment_batch(name)
        expected = json.dumps(call, separators=(",", ":"), ensure_ascii=False).encode()
        assert library in sent[name]
        assert sent[name].replace(library, b"") == expected, name
    track = json.loads(sent[ids[0]])
    assert track["context"] == {"traits": {}, "consent": {}, "groupId": track["userId"], "library": LIBRARY}
    assert json.loads(sent[group["messageId"]])["traits"]["customFields"] == {"crm": "A-1", "seats": 3}
