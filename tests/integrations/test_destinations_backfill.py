"""Backfills and forwarding through real workers: a destination connected after the fact gets a
time range of stored usage events once each, or the customers (and contacts) the hub got in it,
once per version; a backfill whose worker is SIGKILLed resumes and
still sends each event once; events stored while a destination is connected reach it through
the worker (the named task after commit, and the sweep for what a lost task left)."""

import time
from collections import Counter
from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from events.services import usage_events_ingest
from hub.errors import HubError
from hub.models import Customer, CustomerForward
from hub.services.customers import customer_identify
from integrations import backfill as backfills
from integrations import delivery
from integrations.destinations import destination_save
from integrations.forwarding import customers_forward as forward_customers
from integrations.models import Backfill, Delivery
from tests.destination_standins import ChartMogulStandIn, MetronomeStandIn
from tests.integrations.conftest import make_customer
from tests.integrations.test_delivery_faults import wait_delivered, worker_with_beat

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    s = MetronomeStandIn(token="mt_1").start()
    yield s
    s.stop()


def _ingest(app, customer, ids, at):
    raw = [
        {
            "eventName": "api_call",
            "eventId": i,
            "customerId": customer.platform_id,
            "timestamp": at.isoformat(),
        }
        for i in ids
    ]
    for start in range(0, len(raw), 500):
        usage_events_ingest(app=app, raw_events=raw[start : start + 500])


def _connect(workspace, app, server):
    return destination_save(
        workspace=workspace, kind="metronome", name="Metronome", secret="mt_1", url=server.url, apps=[app]
    )


def test_a_backfill_sends_its_range_once_and_not_what_was_forwarded_already(
    workspace, app, server, fast_retries
):
    customer = make_customer(app, "shop-1")
    day = timezone.now() - timedelta(days=3)
    _ingest(app, customer, [f"old-{i}" for i in range(30)], day)
    _ingest(app, customer, ["older"], day - timedelta(days=5))  # outside the range
    metronome = _connect(workspace, app, server)
    _ingest(app, customer, ["new-1"], timezone.now())
    from integrations import forwarding

    forwarding.usage_events_forward()  # new-1 goes by forwarding
    started = backfills.backfill_start(
        integration=metronome, since=day - timedelta(days=1), until=timezone.now(), enqueue=False
    )
    assert started.total == 31
    fast_retries.HUB_BACKFILL_CHUNK = 7
    while backfills.backfill_run(backfill_id=started.pk, budget_seconds=5):
        pass
    delivery.deliveries_send(integration_id=metronome.pk, budget_seconds=10)
    done = Backfill.objects.get(pk=started.pk)
    assert (done.status, done.done, done.queued) == ("done", 31, 30)
    counts = server.counts("transaction_id")
    assert set(counts) == {f"old-{i}" for i in range(30)} | {"new-1"}
    assert max(counts.values()) == 1


def test_hub_backfill_command_runs_inline_and_prints_progress(workspace, app, server, fast_retries, capsys):
    customer = make_customer(app, "shop-1")
    _ingest(app, customer, [f"e-{i}" for i in range(5)], timezone.now() - timedelta(hours=2))
    _connect(workspace, app, server)
    since = (timezone.now() - timedelta(days=1)).isoformat()
    call_command("hub_backfill", workspace=workspace.slug, destination="metronome", since=since, inline=True)
    out = capsys.readouterr().out
    assert "done: 5 of 5 events walked, 5 deliveries queued" in out
    assert len(server.items) == 5


@pytest.mark.worker
def test_a_backfill_whose_worker_is_killed_resumes_and_sends_each_event_once(
    workspace, app, server, fast_retries, tmp_path
):
    customer = make_customer(app, "shop-1")
    at = timezone.now() - timedelta(hours=5)
    ids = [f"k-{i:05d}" for i in range(3000)]
    _ingest(app, customer, ids, at)
    metronome = _connect(workspace, app, server)
    env = {"HUB_BACKFILL_CHUNK": "40", "HUB_BACKFILL_STALLED_SECONDS": "2"}
    worker = worker_with_beat("backfill-kill", tmp_path, **env).start()
    try:
        started = backfills.backfill_start(
            integration=metronome, since=at - timedelta(minutes=1), until=timezone.now()
        )
        deadline = time.monotonic() + 30
        while Backfill.objects.get(pk=started.pk).done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        walked = Backfill.objects.get(pk=started.pk).done
        worker.kill()  # SIGKILL, mid-backfill
        assert 0 < walked < len(ids), walked
    finally:
        worker.stop()
    with worker_with_beat("backfill-resume", tmp_path, **env):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            delivered = Delivery.objects.filter(integration=metronome, status="delivered").count()
            if delivered == len(ids) and Backfill.objects.get(pk=started.pk).status == "done":
                break
            time.sleep(0.2)
    done = Backfill.objects.get(pk=started.pk)
    assert (done.status, done.queued) == ("done", len(ids)), (done.status, done.done, done.queued)
    counts = server.counts("transaction_id")
    assert set(counts) == set(ids)
    # Resent only under the same transaction id (Metronome ignores those), never as a new event.
    assert Delivery.objects.filter(integration=metronome).count() == len(ids)


@pytest.mark.worker
def test_usage_events_reach_the_destination_through_a_real_worker(
    workspace, app, server, fast_retries, tmp_path
):
    metronome = _connect(workspace, app, server)
    customer = make_customer(app, "shop-1")
    with worker_with_beat("forward", tmp_path):
        ids = [f"w-{i}" for i in range(200)]
        for i in range(0, 200, 20):
            _ingest(app, customer, ids[i : i + 20], timezone.now())
        server.wait_items(200, timeout=30)
        # A delivery sent at once is written after its request (in its final state): wait for it.
        wait_delivered(metronome, 200)
    counts = server.counts("transaction_id")
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert Delivery.objects.filter(integration=metronome, status="delivered").count() == 200


# --- Customers and contacts ----------------------------------------------------------------------


@pytest.fixture
def chartmogul_server():
    s = ChartMogulStandIn().start()
    yield s
    s.stop()


def _chartmogul(workspace, app, server):
    return destination_save(workspace=workspace, kind="chartmogul", name="ChartMogul",
                            secret=server.url + ChartMogulStandIn.path, apps=[app])  # fmt: skip


def _shops(app, refs):
    """Identified customers, each with one contact (stored before any destination takes them,
    so nothing is forwarded)."""
    for ref in refs:
        customer_identify(app=app, platform_id=ref, name=f"Shop {ref}", email=f"billing@{ref}.test",
                          contacts=[{"email": f"owner@{ref}.test", "name": "Ann Lee", "label": "owner"}])  # fmt: skip


def _by_type(server) -> dict[str, Counter]:
    counts: dict[str, Counter] = {"Send Customer": Counter(), "Send Contact": Counter()}
    for item in server.items:
        counts[item["type"]][item["group_id"] if item["type"] == "Send Customer" else item["email"]] += 1
    return counts


def test_a_customer_backfill_sends_each_customer_and_contact_once_per_version(
    workspace, app, chartmogul_server, fast_retries
):
    refs = [f"shop-{i}" for i in range(12)]
    _shops(app, refs)
    _shops(app, ["old-shop"])  # the hub got it before the range
    Customer.objects.filter(platform_id="old-shop").update(created_at=timezone.now() - timedelta(days=30))
    make_placeholder = usage_events_ingest(
        app=app, raw_events=[{"eventName": "x", "customerId": "unknown-shop"}]
    )
    assert make_placeholder and Customer.objects.get(platform_id="unknown-shop").is_placeholder
    assert not CustomerForward.objects.exists()
    chartmogul = _chartmogul(workspace, app, chartmogul_server)
    since = timezone.now() - timedelta(days=1)

    def backfill() -> Backfill:
        started = backfills.backfill_start(integration=chartmogul, since=since, until=timezone.now(),
                                           enqueue=False, items="customers")  # fmt: skip
        while backfills.backfill_run(backfill_id=started.pk, budget_seconds=5):
            pass
        delivery.deliveries_send(integration_id=chartmogul.pk, budget_seconds=10)
        return Backfill.objects.get(pk=started.pk)

    fast_retries.HUB_BACKFILL_CHUNK = 5
    done = backfill()
    assert (done.status, done.total, done.done, done.queued) == ("done", 12, 12, 24)
    assert done.noun == "customers"
    assert not chartmogul_server.violations
    ids = {str(c.public_id): c.platform_id for c in Customer.objects.filter(platform_id__in=refs)}
    counts = _by_type(chartmogul_server)
    assert counts["Send Customer"] == Counter(dict.fromkeys(ids, 1))
    assert counts["Send Contact"] == Counter({f"owner@{ref}.test": 1 for ref in refs})
    company = next(i for i in chartmogul_server.items if i["type"] == "Send Customer")
    assert company["name"] == f"Shop {ids[company['group_id']]}" and company["user_id"] == company["group_id"]
    assert company["message_id"].startswith("customer-")
    contact = next(i for i in chartmogul_server.items if i["type"] == "Send Contact")
    assert (contact["first_name"], contact["last_name"], contact["company"]["id"]) == ("Ann", "Lee", ANY)

    # Again over the same range: every customer and contact was sent in this version already.
    again = backfill()
    assert (again.done, again.queued) == (12, 0) and len(chartmogul_server.items) == 24

    # A change is forwarded (the destination takes customers now); a backfill after it sends that
    # customer's new version (and its contact's), once, under a new id; nothing else again.
    customer_identify(app=app, platform_id="shop-3", name="Shop Three")
    forward_customers()
    delivery.deliveries_send(integration_id=chartmogul.pk, budget_seconds=10)
    assert len(chartmogul_server.items) == 25
    later = backfill()
    assert later.queued == 2 and len(chartmogul_server.items) == 27
    counts = _by_type(chartmogul_server)
    changed = next(k for k, v in ids.items() if v == "shop-3")
    assert counts["Send Customer"][changed] == 3 and counts["Send Contact"]["owner@shop-3.test"] == 2
    assert sum(counts["Send Customer"].values()) == 14
    names = [i["name"] for i in chartmogul_server.items if i.get("group_id") == changed]
    assert names == ["Shop shop-3", "Shop Three", "Shop Three"]
    message_ids = Counter(i["message_id"] for i in chartmogul_server.items)
    assert max(message_ids.values()) == 1


def test_a_backfill_sends_only_what_the_destination_takes(workspace, app, server, chartmogul_server):
    _shops(app, ["shop-1"])
    metronome = _connect(workspace, app, server)
    now = timezone.now()
    with pytest.raises(HubError, match="takes no customers or contacts"):
        backfills.backfill_start(integration=metronome, since=now - timedelta(days=1), until=now,
                                 items="customers")  # fmt: skip
    chartmogul = _chartmogul(workspace, app, chartmogul_server)
    with pytest.raises(HubError, match="takes no usage events"):
        backfills.backfill_start(integration=chartmogul, since=now - timedelta(days=1), until=now)
    with pytest.raises(HubError, match="not 'plans'"):
        backfills.backfill_start(
            integration=chartmogul, since=now - timedelta(days=1), until=now, items="plans"
        )
    # Only its contacts when the destination's customer subscription is off.
    chartmogul.subscriptions.filter(item_kind="customer").update(enabled=False)
    started = backfills.backfill_start(integration=chartmogul, since=now - timedelta(days=1),
                                       until=timezone.now(), enqueue=False, items="customers")  # fmt: skip
    backfills.backfill_run(backfill_id=started.pk)
    assert list(Delivery.objects.filter(integration=chartmogul).values_list("item_kind", flat=True)) == [
        "contact"
    ]


def test_hub_backfill_command_takes_customers(workspace, app, chartmogul_server, fast_retries, capsys):
    _shops(app, ["shop-1", "shop-2", "shop-3"])
    _chartmogul(workspace, app, chartmogul_server)
    since = (timezone.now() - timedelta(days=1)).isoformat()
    call_command("hub_backfill", workspace=workspace.slug, destination="chartmogul", since=since, inline=True,
                 items="customers")  # fmt: skip
    out = capsys.readouterr().out
    assert "customers of ChartMogul" in out
    assert "done: 3 of 3 customers walked, 6 deliveries queued" in out
    assert len(chartmogul_server.items) == 6 and not chartmogul_server.violations


@pytest.mark.worker
def test_a_customer_backfill_whose_worker_is_killed_resumes_and_sends_each_once(
    workspace, app, chartmogul_server, fast_retries, tmp_path
):
    refs = [f"k-{i:04d}" for i in range(300)]
    _shops(app, refs)
    chartmogul = _chartmogul(workspace, app, chartmogul_server)
    env = {"HUB_BACKFILL_CHUNK": "4", "HUB_BACKFILL_STALLED_SECONDS": "2"}
    worker = worker_with_beat("backfill-customers-kill", tmp_path, **env).start()
    try:
        started = backfills.backfill_start(integration=chartmogul, since=timezone.now() - timedelta(hours=1),
                                           until=timezone.now(), items="customers")  # fmt: skip
        deadline = time.monotonic() + 30
        while Backfill.objects.get(pk=started.pk).done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        walked = Backfill.objects.get(pk=started.pk).done
        worker.kill()  # SIGKILL, mid-backfill
        assert 0 < walked < len(refs), walked
    finally:
        worker.stop()
    expected = 2 * len(refs)
    with worker_with_beat("backfill-customers-resume", tmp_path, **env):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            delivered = Delivery.objects.filter(integration=chartmogul, status="delivered").count()
            if delivered == expected and Backfill.objects.get(pk=started.pk).status == "done":
                break
            time.sleep(0.2)
    done = Backfill.objects.get(pk=started.pk)
    assert (done.status, done.done, done.queued) == ("done", len(refs), expected), (done.status, done.done)
    counts = _by_type(chartmogul_server)
    assert len(counts["Send Customer"]) == len(counts["Send Contact"]) == len(refs)
    # Resent only under the same message id, never as a second delivery.
    assert Delivery.objects.filter(integration=chartmogul).count() == expected
    sent = {i["message_id"] for i in chartmogul_server.items}
    assert len(sent) == expected and not chartmogul_server.violations


def test_the_backfill_card_offers_what_the_destination_takes_and_starts_it(
    workspace, app, user, logged_in, chartmogul_server, server, monkeypatch
):
    enqueued = []
    monkeypatch.setattr(backfills, "_enqueue", enqueued.append)
    _shops(app, ["shop-1", "shop-2"])
    chartmogul = _chartmogul(workspace, app, chartmogul_server)
    page = reverse("destination_edit", args=[workspace.slug, chartmogul.pk])
    html = logged_in.get(page).content.decode()
    assert '<option value="customers">Customers and contacts</option>' in html
    assert 'value="usage_events"' not in html
    backfill_url = reverse("destination_backfill", args=[workspace.slug, chartmogul.pk])
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    response = logged_in.post(
        backfill_url, {"items": "usage_events", "since": since, "until": until}, follow=True
    )
    assert not Backfill.objects.exists()  # not a choice ChartMogul has
    response = logged_in.post(
        backfill_url, {"items": "customers", "since": since, "until": until}, follow=True
    )
    assert "Backfill of 2 customers started." in response.content.decode()
    (started,) = Backfill.objects.all()
    assert (started.items, started.total, started.created_by) == ("customers", 2, user.get_username())
    assert enqueued == [started.pk]
    html = logged_in.get(page).content.decode()
    assert "Customers and contacts" in html and "0 of 2 customers" in html

    # A destination taking nothing of the kind offers no backfill of it; one taking nothing, none.
    metronome = _connect(workspace, app, server)
    html = logged_in.get(reverse("destination_edit", args=[workspace.slug, metronome.pk])).content.decode()
    assert 'value="usage_events"' in html and 'value="customers"' not in html
    chartmogul.subscriptions.update(enabled=False)
    html = logged_in.get(page).content.decode()
    assert 'id="backfill-nothing"' in html and "Start backfill" not in html


def test_a_backfill_goes_on_while_a_sender_holds_its_destinations_row(workspace, app, server, fast_retries):
    """A sender's attempt insert holds a key-share lock on the destination's row until it commits:
    a backfill step goes on meanwhile (it once skipped itself, as if another worker held it, and
    waited a minute for the sweep)."""
    import psycopg
    from django.db import connection

    customer = make_customer(app, "shop-1")
    day = timezone.now() - timedelta(days=1)
    _ingest(app, customer, [f"ev-{i}" for i in range(5)], day)
    metronome = _connect(workspace, app, server)
    started = backfills.backfill_start(
        integration=metronome, since=day - timedelta(hours=1), until=timezone.now(), enqueue=False
    )
    with psycopg.connect(**connection.get_connection_params()) as sender:
        sender.execute("SELECT 1 FROM integrations_integration WHERE id = %s FOR KEY SHARE", [metronome.pk])
        more, created = backfills.backfill_step(backfill_id=started.pk)
        sender.rollback()
    assert more is True
    assert created == {metronome.pk: 5}
    assert Backfill.objects.get(pk=started.pk).done == 5


def test_a_backfill_walks_events_of_one_timestamp_across_chunks(workspace, app, server, fast_retries):
    """Chunks end inside a run of events of the same timestamp: the cursor (timestamp, id) takes
    each once."""
    customer = make_customer(app, "shop-1")
    day = timezone.now() - timedelta(days=1)
    _ingest(app, customer, [f"same-{i}" for i in range(10)], day)
    _ingest(app, customer, [f"later-{i}" for i in range(3)], day + timedelta(seconds=1))
    metronome = _connect(workspace, app, server)
    started = backfills.backfill_start(
        integration=metronome, since=day - timedelta(hours=1), until=timezone.now(), enqueue=False
    )
    fast_retries.HUB_BACKFILL_CHUNK = 4
    while backfills.backfill_run(backfill_id=started.pk, budget_seconds=5):
        pass
    done = Backfill.objects.get(pk=started.pk)
    assert (done.status, done.done, done.queued) == ("done", 13, 13)
    made = Counter(Delivery.objects.filter(integration=metronome).values_list("item_id", flat=True))
    assert len(made) == 13 and max(made.values()) == 1
