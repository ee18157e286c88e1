"""Recovery after an outage and isolation from a hanging destination, with a real Celery worker
and beat: the circuit's probe finds the destination back within seconds whatever the outage
length, the backlog goes at once, and a hanging destination does not hold up a healthy one."""

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from hub.models import Activity, ActivityOutbox
from hub.services import accounts, lifecycle
from integrations.models import Attempt, Delivery, Integration
from integrations.services import integration_save
from tests.integrations.conftest import make_customer
from tests.integrations.test_delivery_faults import wait_delivered, worker_with_beat
from tests.segment_standin import SegmentStandIn

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Backoff long enough that, without the probe, nothing would be retried within the test.
SLOW_BACKOFF = {
    "HUB_DELIVERY_BACKOFF_BASE": "120",
    "HUB_DELIVERY_BACKOFF_MAX": "3600",
    "HUB_DELIVERY_PROBE_SECONDS": "5",
}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _first_arrival_after(standin, since: float) -> float:
    return min(standin.received_at.values()) - since


@pytest.mark.parametrize("outage", ["60s", "simulated-30min"])
def test_after_an_outage_the_first_delivery_arrives_within_10_s_and_the_backlog_follows(
    outage, segment, app, standin, tmp_path
):
    standin.stop()
    with worker_with_beat(f"recover{outage}", tmp_path, **SLOW_BACKOFF) as worker:
        down_at = time.monotonic()
        customers = [make_customer(app, f"o-{i}") for i in range(40)]
        _wait(
            lambda: Integration.objects.get(pk=segment.pk).outage_since is not None, 30, "the circuit to open"
        )
        _wait(lambda: not ActivityOutbox.objects.exists(), 30, "the fan-out")
        assert Delivery.objects.filter(integration=segment).count() == len(customers)
        if outage == "60s":
            time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
        else:
            # What half an hour of failures leaves behind: late attempts, each due in up to an hour.
            now = timezone.now()
            Delivery.objects.filter(integration=segment, status="pending").update(
                attempts=9,
                next_attempt_at=now + timedelta(hours=1),
                retry_window_start=now - timedelta(minutes=30),
            )
            Integration.objects.filter(pk=segment.pk).update(outage_since=now - timedelta(minutes=30))
            time.sleep(3)
        down_for = time.monotonic() - down_at
        probes = Attempt.objects.filter(integration=segment, probe=True).count()
        assert not standin.messages
        standin.start()  # the same port again
        back = time.time()
        activities = list(Activity.objects.filter(app=app))
        wait_delivered(segment, len(activities), timeout=30)
        first = _first_arrival_after(standin, back)
        assert first <= 10, (first, worker.output()[-2000:])
        standin.assert_each_once_by_id(a.pk for a in activities)
        # Not hammered while down: one probe per HUB_DELIVERY_PROBE_SECONDS (5 s), and a few spare.
        assert probes <= down_for / 5 + 3, (probes, down_for)


def _healthy_latencies(customer, server, seconds: float, also=None) -> list[float]:
    """Record activities for `customer` every 50 ms (and one for `also` beside each) for `seconds`;
    return the sorted commit-to-received latencies of `customer`'s deliveries at `server`."""
    commits: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if also is not None:
            with transaction.atomic():
                lifecycle.activity_record(customer=also, kind="reviewed", properties={})
        with transaction.atomic():
            a = lifecycle.activity_record(customer=customer, kind="reviewed", properties={})
        commits[str(a.pk)] = time.time()
        time.sleep(0.05)
    server.wait_for(commits, timeout=30)
    return sorted(server.received_at[k] - t for k, t in commits.items())


# The destination's timeout in this test: a healthy delivery that waited on a hanging request
# would take at least this long, so the bound below says "never waited", not "was fast".
HANG_TIMEOUT = 3.0


def test_a_hanging_destination_does_not_hold_up_a_healthy_one(segment, app, standin, tmp_path):
    healthy_server = SegmentStandIn(write_key="wk_2").start()
    try:
        other = accounts.workspace_create(name="Other")
        other_app = accounts.app_create(workspace=other, name="Other app")
        healthy = integration_save(
            workspace=other, name="Healthy", write_key="wk_2", region="custom", custom_host=healthy_server.url,
            apps=[other_app], activities=["reviewed"],
        )  # fmt: skip
        hanging_customer = make_customer(app, "h-1")
        healthy_customer = make_customer(other_app, "ok-1")
        # Four worker processes; the hanging integration may hold HUB_DELIVERY_MAX_IN_FLIGHT (2)
        # of them with requests (plus, once its circuit is open, only its one probe).
        env = {"HUB_DELIVERY_PROBE_SECONDS": "1", "HUB_DELIVERY_TIMEOUT": str(HANG_TIMEOUT)}
        with worker_with_beat("isolation", tmp_path, concurrency=4, **env):
            alone = _healthy_latencies(healthy_customer, healthy_server, 3)
            standin.hang_next(10_000, HANG_TIMEOUT * 3)  # every request, past the timeout
            latencies = _healthy_latencies(healthy_customer, healthy_server, 10, also=hanging_customer)
            p99_alone = alone[int(len(alone) * 0.99)]
            p99 = latencies[int(len(latencies) * 0.99)]
            # No healthy delivery waited on a hanging request (it would have taken the timeout).
            assert p99 < HANG_TIMEOUT, (p99_alone, latencies[-10:])
            # The hanging one never held more than its 2 request slots plus its one probe: the
            # worker's fourth process always stayed free for the healthy one.
            assert standin.max_hanging <= 3, standin.max_hanging
            assert standin.hung >= 2  # the fault did happen
            assert Integration.objects.get(pk=segment.pk).outage_since is not None
            # Recorded too (a chunk of both integrations commits once the hanging request ends).
            wait_delivered(healthy, len(alone) + len(latencies), timeout=HANG_TIMEOUT * 4)
    finally:
        healthy_server.stop()
