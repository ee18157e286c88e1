"""Segment's own action code (npm @segment/action-destinations, run by @segment/actions-core in
Node) against the live hub: Mantle pushEvent (single and batch) and identify, Metronome sendEvent,
ChartMogul sendContact/sendCustomer and Webhook send with a shared secret."""

import pytest

from events.models import UsageEvent
from hub.models import Contact, Customer
from integrations.sources.models import InboxMessage
from integrations.sources.processing import inbox_process_pending
from integrations.sources.services import source_create
from tests.factories import AppFactory, api_key_for
from tests.node_runner import run_node_script

pytestmark = [pytest.mark.node, pytest.mark.django_db(transaction=True)]


def test_segment_actions_reach_the_hub_and_are_stored(live_server):
    app = AppFactory()
    _, key = api_key_for(app)
    chartmogul = source_create(app=app, name="ChartMogul")
    hooks = source_create(app=app, name="Webhook", shared_secret="hook-secret")
    out = run_node_script(
        "action_destinations.mjs",
        {
            "HUB_URL": live_server.url,
            "APP_ID": str(app.public_id),
            "API_KEY": key,
            "CHARTMOGUL_TOKEN": chartmogul.webhook_token,
            "WEBHOOK_TOKEN": hooks.webhook_token,
            "WEBHOOK_SECRET": "hook-secret",
        },
    )
    for name in ("mantlePush", "mantlePushBatch", "mantleIdentify", "metronomeSend", "chartmogulCustomer",
                 "chartmogulContact", "webhookSend", "webhookBatch"):  # fmt: skip
        assert out[name]["ok"], (name, out[name])
        assert all(200 <= s < 300 for s in out[name]["statuses"]), (name, out[name])
    assert out["webhookWrongSecret"]["ok"] is False and out["webhookWrongSecret"]["status"] == 401
    assert (
        "api.metronome.com/v1/ingest" in out["seen"] and "appapi.heymantle.com/v1/usage_events" in out["seen"]
    )

    # Mantle is stored at once (flow 1), Metronome through its source's inbox inline (before the 2xx);
    # the webhook sources through the inbox and a worker.
    events = {e.event_id: e for e in UsageEvent.objects.filter(app=app)}
    assert {"seg-mantle-1", "seg-mantle-2", "seg-mantle-3", "seg-metronome-1"} <= set(events)
    shop = Customer.objects.get(app=app, myshopify_domain="node-shop.myshopify.com")
    assert (shop.platform_id, shop.name, shop.platform_plan_name) == ("node-gid-1", "Node Shop", "Pro")
    assert events["seg-mantle-1"].customer_id == shop.pk and events["seg-metronome-1"].customer_id == shop.pk
    assert events["seg-metronome-1"].event_name == "Report Generated"

    while inbox_process_pending():
        pass
    node_co = Customer.objects.get(app=app, platform_id="node-co")
    assert (node_co.name, node_co.email) == ("Node Co", "billing@node-co.test")
    assert list(Contact.objects.filter(customer=node_co).values_list("email", "name", "label")) == [
        ("joe@node-co.test", "Joe Doe", "CFO")
    ]
    hook_rows = InboxMessage.objects.filter(source=hooks).order_by("message_id")
    assert [(r.message_id, r.outcome) for r in hook_rows] == [
        ("seg-hook-1", "stored"), ("seg-hook-2", "stored"), ("seg-hook-3", "stored")]  # fmt: skip
    assert {"seg-hook-1", "seg-hook-2", "seg-hook-3"} <= set(
        UsageEvent.objects.values_list("event_id", flat=True)
    )
