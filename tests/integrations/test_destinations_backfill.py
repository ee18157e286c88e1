"""Backfills and forwarding through real workers: a destination connected after the fact gets a
time range of stored usage events once each; a backfill whose worker is SIGKILLed resumes and
still sends each event once; events stored while a destination is connected reach it through
the worker (the named task after commit, and the sweep for what a lost task left)."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from events.services import usage_events_ingest
from integrations import backfill as backfills
from integrations import delivery
from integrations.destinations import destination_save
from integrations.models import Backfill, Delivery
from tests.destination_standins import MetronomeStandIn
from tests.integrations.conftest import make_customer
from tests.integrations.test_delivery_faults import worker_with_beat

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
    counts = server.counts("transaction_id")
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert Delivery.objects.filter(integration=metronome, status="delivered").count() == 200
