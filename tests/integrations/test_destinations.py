"""Destinations: usage events forwarded to Metronome, Kable and signed webhooks on the delivery
engine, through subscriptions (trigger + mapping) with Segment's default mappings; checked at
strict local stand-ins (tests/destination_standins.py)."""

import json
from unittest.mock import ANY

import pytest
from standardwebhooks.webhooks import Webhook

from events.models import ForwardBatch
from events.services import usage_events_ingest
from hub.errors import HubError
from hub.models import App, Customer
from hub.services import accounts
from integrations import delivery, forwarding
from integrations.destinations import destination_save, subscription_save
from integrations.models import Delivery, Integration
from integrations.services import delivery_retry
from integrations.vendors.webhook.connector import secret_generate
from tests.destination_standins import KableStandIn, MetronomeStandIn, WebhookReceiver
from tests.integrations.conftest import make_customer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def metronome_server():
    server = MetronomeStandIn(token="mt_secret_1").start()
    yield server
    server.stop()


@pytest.fixture
def metronome(workspace, app, metronome_server, fast_retries):
    return destination_save(
        workspace=workspace, kind="metronome", name="Metronome", secret="mt_secret_1",
        url=metronome_server.url, apps=[app],
    )  # fmt: skip


def ingest(app, customer, *events):
    raw = [
        {"eventName": name, "eventId": event_id, "customerId": customer.platform_id, "properties": props}
        for name, event_id, props in events
    ]
    return usage_events_ingest(app=app, raw_events=raw)


def forward_all():
    """Forward every waiting batch and send what was left pending, as the worker would."""
    forwarding.usage_events_forward()
    for integration in Integration.objects.all():
        delivery.deliveries_send(integration_id=integration.pk, budget_seconds=5)


def test_usage_events_reach_metronome_once_with_segments_default_mapping(app, metronome, metronome_server):
    customer = make_customer(app, "shop-1")
    ingest(app, customer, ("api_call", "ev-1", {"tokens": 12}), ("api_call", "ev-2", {"tokens": 3}))
    forward_all()
    forward_all()  # the batch went with its deliveries: nothing is sent twice
    assert not metronome_server.violations
    got = sorted(metronome_server.items, key=lambda e: e["transaction_id"])
    assert [e["transaction_id"] for e in got] == ["ev-1", "ev-2"]
    first = got[0]
    assert first["customer_id"] == str(customer.public_id)  # $.context.groupId: the hub's customer
    assert first["event_type"] == "api_call"
    assert first["properties"] == {"tokens": 12}
    assert first["timestamp"].endswith("Z")
    assert metronome_server.requests[0][0]["authorization"] == "Bearer mt_secret_1"
    rows = Delivery.objects.filter(integration=metronome)
    assert sorted(rows.values_list("status", flat=True)) == ["delivered", "delivered"]
    assert not ForwardBatch.objects.exists()


def test_an_app_without_subscribed_destinations_leaves_no_forward_batch(app, workspace):
    customer = make_customer(app, "shop-1")
    ingest(app, customer, ("api_call", "ev-1", {}))
    assert not ForwardBatch.objects.exists()
    other = accounts.app_create(workspace=workspace, name="Other")
    assert not App.objects.get(pk=other.pk).forward_usage_events


def test_a_trigger_filters_and_an_edited_mapping_shapes_what_is_sent(app, metronome, metronome_server):
    subscription = metronome.subscriptions.get()
    fields = dict(subscription.fields, customer_id={"path": "$.customer.platformId"})
    subscription_save(
        integration=metronome, subscription=subscription, name=subscription.name, action="sendEvent",
        trigger='type = "track" and event = "api_call"', fields=fields,
    )  # fmt: skip
    customer = make_customer(app, "shop-9")
    ingest(app, customer, ("api_call", "ev-1", {}), ("page_view", "ev-2", {}))
    forward_all()
    assert [e["transaction_id"] for e in metronome_server.items] == ["ev-1"]
    assert metronome_server.items[0]["customer_id"] == "shop-9"


def test_a_bad_trigger_or_mapping_is_refused_naming_the_problem(metronome):
    subscription = metronome.subscriptions.get()
    with pytest.raises(HubError, match="Trigger"):
        subscription_save(integration=metronome, subscription=subscription, name="x", action="sendEvent",
                          trigger='type = ', fields=subscription.fields)  # fmt: skip
    with pytest.raises(HubError, match="unknown target"):
        subscription_save(integration=metronome, subscription=subscription, name="x", action="sendEvent",
                          trigger='type = "track"', fields={"nope": {"path": "$.event"}})  # fmt: skip


def test_a_retry_sends_the_stored_bytes_again_and_a_permanent_error_fails(app, metronome, metronome_server):
    customer = make_customer(app, "shop-1")
    metronome_server.fail_next(1, 500)
    ingest(app, customer, ("api_call", "ev-1", {"n": 1}))
    forwarding.usage_events_forward()
    row = Delivery.objects.get(integration=metronome)
    assert row.status == "pending" and row.attempts == 1
    # The customer changes after the event: the resend is the message as it was stored.
    Customer.objects.filter(pk=customer.pk).update(name="Renamed")
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    Integration.objects.filter(pk=metronome.pk).update(outage_since=None, probe_at=None)
    delivery.deliveries_send(integration_id=metronome.pk, budget_seconds=5)
    row.refresh_from_db()
    assert row.status == "delivered"
    sent = [body for _, body in metronome_server.requests]
    assert sent[0] == sent[1] == b"[" + row.message.encode() + b"]"

    metronome_server.fail_next(1, 400, {"message": "bad event"})
    ingest(app, customer, ("api_call", "ev-2", {}))
    forwarding.usage_events_forward()
    failed = Delivery.objects.get(integration=metronome, status="failed")
    assert "bad event" in failed.last_error
    # Retry puts it back, and it goes through with the same bytes.
    delivery_retry(delivery=failed)
    delivery.deliveries_send(integration_id=metronome.pk, budget_seconds=5)
    assert Delivery.objects.get(pk=failed.pk).status == "delivered"


def test_a_401_fails_and_marks_the_destination_as_needing_attention(app, metronome, metronome_server):
    metronome_server.token = "rotated"
    ingest(app, make_customer(app, "shop-1"), ("api_call", "ev-1", {}))
    forwarding.usage_events_forward()
    assert Delivery.objects.get(integration=metronome).status == "failed"
    assert Integration.objects.get(pk=metronome.pk).needs_attention


def test_a_message_missing_a_required_field_is_stored_failed_and_never_sent(app, metronome, metronome_server):
    subscription = metronome.subscriptions.get()
    fields = dict(subscription.fields, customer_id={"path": "$.properties.account"})
    subscription_save(integration=metronome, subscription=subscription, name=subscription.name,
                      action="sendEvent", trigger=subscription.trigger, fields=fields)  # fmt: skip
    ingest(
        app, make_customer(app, "shop-1"), ("api_call", "ev-1", {}), ("api_call", "ev-2", {"account": "A"})
    )
    forward_all()
    assert [e["customer_id"] for e in metronome_server.items] == ["A"]
    refused = Delivery.objects.get(integration=metronome, status="failed")
    assert refused.attempts == 0 and "customer_id missing" in refused.last_error


def test_a_mapping_copied_from_segment_shapes_what_is_sent_and_a_failing_directive_fails_the_delivery(
    app, metronome, metronome_server
):
    """Subscriptions take Segment's mapping-kit as is; a directive that fails on an event (as it
    would in Segment) stores a failed delivery saying why, never sent."""
    subscription = metronome.subscriptions.get()
    fields = dict(
        subscription.fields,
        event_type={"@if": {"exists": {"@path": "$.properties.tier"},
                            "then": {"@template": "{{event}}_{{properties.tier}}"},
                            "else": {"@case": {"operator": "upper", "value": {"@path": "$.event"}}}}},
        properties={"@merge": {"objects": [{"@path": "$.properties"}, {"via": "hub"}], "direction": "right"}},
    )  # fmt: skip
    subscription_save(integration=metronome, subscription=subscription, name=subscription.name,
                      action="sendEvent", trigger=subscription.trigger, fields=fields)  # fmt: skip
    customer = make_customer(app, "shop-1")
    ingest(app, customer, ("api_call", "ev-1", {"tier": "gold"}), ("api_call", "ev-2", {}))
    forward_all()
    got = {e["transaction_id"]: e for e in metronome_server.items}
    assert got["ev-1"]["event_type"] == "api_call_gold" and got["ev-2"]["event_type"] == "API_CALL"
    assert got["ev-1"]["properties"] == {"tier": "gold", "via": "hub"}

    failing = dict(fields, event_type={"@path": {"@path": "$.properties.tier"}})  # a path that is no text
    subscription_save(integration=metronome, subscription=subscription, name=subscription.name,
                      action="sendEvent", trigger=subscription.trigger, fields=failing)  # fmt: skip
    ingest(app, customer, ("api_call", "ev-3", {"tier": 5}))
    forward_all()
    refused = Delivery.objects.get(integration=metronome, status="failed")
    assert refused.attempts == 0 and "expected string" in refused.last_error
    assert "ev-3" not in {e["transaction_id"] for e in metronome_server.items}


def test_kable_gets_its_shape_and_headers(app, workspace, fast_retries):
    server = KableStandIn(client_id="kci_1", secret="kcs_1").start()
    try:
        kable = destination_save(workspace=workspace, kind="kable", name="Kable", secret="kcs_1",
                                 url=server.url, apps=[app], config={"client_id": "kci_1"})  # fmt: skip
        customer = make_customer(app, "shop-1")
        ingest(app, customer, ("api_call", "ev-1", {"tokens": 2}))
        forward_all()
        assert not server.violations
        (event,) = server.items
        assert event["clientId"] == str(customer.public_id)  # Client ID Field: the user id
        assert event["transactionId"] == "ev-1" and event["data"] == {"tokens": 2}
        assert Delivery.objects.get(integration=kable).status == "delivered"
    finally:
        server.stop()


def test_webhooks_are_signed_per_the_standard_and_both_secrets_sign_during_rotation(
    app, workspace, fast_retries
):
    old_secret, new_secret = secret_generate(), secret_generate()
    old_receiver, new_receiver = WebhookReceiver(old_secret).start(), WebhookReceiver(new_secret).start()
    try:
        hook = destination_save(workspace=workspace, kind="webhook", name="Hook", secret=old_secret,
                                url=old_receiver.url + "/hooks/in", apps=[app])  # fmt: skip
        customer = make_customer(app, "shop-1")
        ingest(app, customer, ("api_call", "ev-1", {"a": 1}))
        forward_all()
        assert not old_receiver.violations
        (data,) = old_receiver.items
        assert data["messageId"] == "ev-1" and data["event"] == "api_call" and data["properties"] == {"a": 1}
        # A tampered body fails the library's verification (the receiver is strict).
        headers, body = old_receiver.requests[0]
        with pytest.raises(Exception, match="signature"):
            Webhook(old_secret).verify(body.replace(b"api_call", b"api_cal1"), headers)
        # Rotation: the new secret signs, the old one too until the rotation ends.
        hook = destination_save(workspace=workspace, kind="webhook", name="Hook", integration=hook,
                                secret=new_secret, url=new_receiver.url + "/hooks/in", apps=[app])  # fmt: skip
        ingest(app, customer, ("api_call", "ev-2", {}))
        forward_all()
        headers, body = new_receiver.requests[0]
        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(old_secret).verify(body, headers)
        Webhook(new_secret).verify(body, headers)
        assert not new_receiver.violations and len(new_receiver.items) == 1
    finally:
        old_receiver.stop()
        new_receiver.stop()


def test_webhook_batches_are_json_arrays_when_asked_for(app, workspace, fast_retries):
    secret = secret_generate()
    receiver = WebhookReceiver(secret).start()
    try:
        destination_save(workspace=workspace, kind="webhook", name="Hook", secret=secret,
                         url=receiver.url + "/hooks/in", apps=[app], config={"batch": True})  # fmt: skip
        customer = make_customer(app, "shop-1")
        ingest(app, customer, *[("api_call", f"ev-{i}", {}) for i in range(5)])
        forward_all()
        assert len(receiver.requests) == 1 and len(json.loads(receiver.requests[0][1])) == 5
        assert sorted(receiver.counts("messageId")) == [f"ev-{i}" for i in range(5)]
    finally:
        receiver.stop()


def test_destinations_refuse_private_urls_and_bad_secrets(workspace, app, settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = []
    with pytest.raises(HubError, match="URL cannot be used"):
        destination_save(
            workspace=workspace, kind="metronome", name="M", secret="t", url="http://127.0.0.1:9/"
        )
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    with pytest.raises(HubError, match="whsec_"):
        destination_save(
            workspace=workspace, kind="webhook", name="W", secret="plain", url="http://127.0.0.1:9/"
        )


def test_the_forwarding_flag_follows_subscriptions_and_the_destinations_apps(app, workspace, metronome):
    assert App.objects.get(pk=app.pk).forward_usage_events
    subscription = metronome.subscriptions.get()
    subscription_save(integration=metronome, subscription=subscription, name=subscription.name,
                      action="sendEvent", trigger=subscription.trigger, fields=subscription.fields,
                      enabled=False)  # fmt: skip
    assert not App.objects.get(pk=app.pk).forward_usage_events
    subscription_save(integration=metronome, subscription=subscription, name=subscription.name,
                      action="sendEvent", trigger=subscription.trigger, fields=subscription.fields)  # fmt: skip
    destination_save(workspace=workspace, kind="metronome", name="Metronome", integration=metronome,
                     url=metronome.custom_host, apps=[])  # fmt: skip
    assert not App.objects.get(pk=app.pk).forward_usage_events


def test_the_forwarders_event_load_gives_the_rows_the_orm_gives(app):
    """The forwarder reads a chunk's events in one statement: the same rows as the ORM's, the
    timestamp as the track call prints it (UTC, milliseconds truncated), JSON the same values."""
    from datetime import UTC, datetime

    from events.models import UsageEvent
    from tests.factories import CustomerFactory, UsageEventFactory

    customer = CustomerFactory(app=app, platform_id="gid://shopify/Shop/1", custom_fields={"tier": "gold"})
    events = [
        UsageEventFactory(app=app, customer=customer, timestamp=datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=UTC),
                          properties={"rows": 3, "ratio": 1.5, "big": 2**70, "name": "Zoë", "nested": {"a": [1]}}),
        UsageEventFactory(app=app, timestamp=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), properties={}),
    ]  # fmt: skip
    ids = [e.pk for e in reversed(events)]
    loaded = forwarding.events_load(ids)
    orm = list(UsageEvent.objects.filter(pk__in=ids).order_by("id").values(*forwarding.EVENT_FIELDS))
    assert [r["id"] for r in loaded] == [e.pk for e in events]
    for row, expected in zip(loaded, orm, strict=True):
        assert row["timestamp"] == forwarding.iso_ms(expected["timestamp"])
        assert {**row, "timestamp": None, "customer__public_id": str(row["customer__public_id"])} == {
            **expected, "timestamp": None, "customer__public_id": str(expected["customer__public_id"])
        }  # fmt: skip
        assert forwarding.event_message(row) == forwarding.event_message(expected)
    assert loaded[0]["timestamp"] == "2026-03-01T12:00:00.999Z"
    assert loaded[0]["properties"]["big"] == 2**70


def test_rows_left_pending_for_busy_request_slots_go_with_that_destinations_next_fan_out(
    app, workspace, metronome, metronome_server, settings, monkeypatch
):
    """With several destinations, a chunk's rows for one whose request slots are all taken stay
    pending, and the sender started for them gives up while no slot is free; the next fan-out
    that sends all its own rows to that destination takes them along (under steady traffic the
    sweep, which would send them too, comes much later)."""
    import psycopg
    from django.db import connection

    from integrations import tasks
    from integrations.delivery_rows import SEND_SLOTS

    settings.HUB_DELIVERY_PATIENCE = 30  # the task waits for its send threads to finish
    enqueued = []
    monkeypatch.setattr(tasks, "_enqueue_sends", lambda ids, parallel=1: enqueued.extend(ids))
    kable_server = KableStandIn(client_id="kci_1", secret="kcs_1").start()
    try:
        destination_save(workspace=workspace, kind="kable", name="Kable", secret="kcs_1",
                         url=kable_server.url, apps=[app], config={"client_id": "kci_1"})  # fmt: skip
        customer = make_customer(app, "shop-1")
        # Given: every request slot of Metronome taken by another process (its transaction's locks).
        params = connection.get_connection_params()
        with psycopg.connect(**params) as holder:
            for slot in range(settings.HUB_DELIVERY_MAX_IN_FLIGHT):
                holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_SLOTS, metronome.pk * 64 + slot])
            ingest(app, customer, ("api_call", "ev-1", {}), ("api_call", "ev-2", {}))
            tasks._after_fanout(forwarding.usage_events_forward())
            # Then: Kable got its rows, Metronome's wait, a sender was asked for them.
            assert {e["transactionId"] for e in kable_server.items} == {"ev-1", "ev-2"}
            assert metronome_server.items == []
            assert metronome.pk in enqueued
            holder.rollback()  # the slots are free again
        # When: the next events are forwarded (no sender, no sweep ran meanwhile).
        ingest(app, customer, ("api_call", "ev-3", {}))
        tasks._after_fanout(forwarding.usage_events_forward())
        # Then: Metronome's leftovers went with its new row.
        assert sorted(e["transaction_id"] for e in metronome_server.items) == ["ev-1", "ev-2", "ev-3"]
        assert set(Delivery.objects.filter(integration=metronome).values_list("status", flat=True)) == {
            "delivered"
        }
    finally:
        kable_server.stop()


@pytest.fixture
def kable(workspace, app, fast_retries):
    server = KableStandIn(client_id="kci_1", secret="kcs_1").start()
    destination = destination_save(workspace=workspace, kind="kable", name="Kable", secret="kcs_1",
                                   url=server.url, apps=[app], config={"client_id": "kci_1"})  # fmt: skip
    yield destination, server
    server.stop()


@pytest.fixture
def fresh_send_threads():
    from integrations import send_threads

    send_threads._slow.clear()
    send_threads._answer_time.clear()
    yield
    send_threads._slow.clear()
    send_threads._answer_time.clear()


def test_a_chunk_for_several_destinations_is_sent_before_its_rows_are_written(
    app, metronome, metronome_server, kable, fresh_send_threads
):
    """Each destination's requests go out at once, in threads of their own, and each delivery is
    written once, in its final state: no pending row, no claim, no update."""
    from integrations import tasks
    from tests.query_plans import statements_with_params

    _, kable_server = kable
    customer = make_customer(app, "shop-1")
    ingest(app, customer, *[("api_call", f"ev-{i}", {}) for i in range(5)])
    with statements_with_params() as sent:
        tasks._after_fanout(forwarding.usage_events_forward())
    assert sorted(e["transaction_id"] for e in metronome_server.items) == [f"ev-{i}" for i in range(5)]
    assert sorted(e["transactionId"] for e in kable_server.items) == [f"ev-{i}" for i in range(5)]
    writes = [q for q, _ in sent if "integrations_delivery" in q and not q.lstrip().startswith("SELECT")]
    # One statement: the insert (in a WITH that counts its rows), no UPDATE of them.
    assert len(writes) == 1 and "INSERT INTO integrations_delivery" in writes[0], writes
    assert "UPDATE" not in writes[0], writes
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    for destination in (metronome, kable[0]):
        attempt = destination.attempts.get()
        assert (attempt.outcome, attempt.message_count) == ("delivered", 5)


def test_a_destination_slower_than_its_patience_holds_the_others_only_that_long(
    app, metronome, metronome_server, kable, fresh_send_threads, settings
):
    """The fan-out waits for a slow destination no longer than its patience: the others' rows
    are written delivered, the slow one's pending under a lease (no sender resends them while its
    request may still be answered), and its answer, when it comes, is recorded by its thread:
    one request each, nothing sent twice."""
    import time

    from django.utils import timezone

    from integrations import send_threads

    settings.HUB_DELIVERY_PATIENCE = 0.2
    kable_integration, kable_server = kable
    kable_server.delay = 0.7  # within the request timeout (1 s), past the patience
    customer = make_customer(app, "shop-1")
    ingest(app, customer, ("api_call", "ev-1", {}), ("api_call", "ev-2", {}))
    started = time.monotonic()
    created = forwarding.usage_events_forward()
    waited = time.monotonic() - started
    assert waited < 0.6, waited  # the patience, not Kable's answer
    assert send_threads.is_slow(kable_integration.pk)
    assert sorted(e["transaction_id"] for e in metronome_server.items) == ["ev-1", "ev-2"]
    assert set(Delivery.objects.filter(integration=metronome).values_list("status", flat=True)) == {
        "delivered"
    }
    held = Delivery.objects.filter(integration=kable_integration)
    assert set(held.values_list("status", flat=True)) == {"pending"}
    assert all(d.next_attempt_at > timezone.now() for d in held)  # leased: not due for a sender
    assert kable_integration.pk not in created.send_now
    assert delivery.deliveries_send(integration_id=kable_integration.pk, budget_seconds=1).requests == 0
    deadline = time.monotonic() + 5
    while set(held.values_list("status", flat=True)) != {"delivered"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(held.values_list("status", "attempts")) == {("delivered", 1)}
    assert len(kable_server.requests) == 1
    assert sorted(e["transactionId"] for e in kable_server.items) == ["ev-1", "ev-2"]
    attempt = kable_integration.attempts.get()
    assert (attempt.outcome, sorted(attempt.delivery_ids)) == ("delivered", sorted(str(d.pk) for d in held))


def test_an_error_in_one_destinations_inline_send_leaves_its_rows_to_the_senders(
    app, metronome, metronome_server, kable, fresh_send_threads, monkeypatch
):
    """A connector that raises while a several-destination chunk is sent fails neither the
    fan-out nor the other destinations: its rows are written pending and sent afterwards."""
    from integrations import delivery_fanout, tasks

    kable_integration, kable_server = kable
    post = delivery_fanout._fanout_post
    failing = {"left": 1}

    def flaky(integration, items):
        if integration.pk == kable_integration.pk and failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("a connector's bug")
        return post(integration, items)

    monkeypatch.setattr(delivery_fanout, "_fanout_post", flaky)
    customer = make_customer(app, "shop-1")
    ingest(app, customer, ("api_call", "ev-1", {}), ("api_call", "ev-2", {}))
    created = forwarding.usage_events_forward()
    assert sorted(e["transaction_id"] for e in metronome_server.items) == ["ev-1", "ev-2"]
    assert created.send_now == {kable_integration.pk: ANY}
    assert set(Delivery.objects.filter(integration=kable_integration).values_list("status", flat=True)) == {
        "pending"
    }
    tasks._after_fanout(created)
    assert sorted(e["transactionId"] for e in kable_server.items) == ["ev-1", "ev-2"]
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
