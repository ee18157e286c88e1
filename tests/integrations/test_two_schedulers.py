"""Growth past one machine: two web processes, two workers and two Celery beat schedulers (one too
many, by mistake) on one database and broker, while activities and usage events arrive. Every
sweep, drain and fan-out may run twice at once: nothing is delivered twice, nothing is lost, and
every event is counted once (docs/scaling.md)."""

import threading
import time
from collections import Counter

import pytest
import requests

from events.metrics.definitions import definition_validate
from events.metrics.rollups import metrics_rebuild
from events.metrics.services import metric_create
from events.models import ForwardBatch, Granularity, MetricRollup, RollupBatch, UsageEvent
from hub.models import Activity
from hub.services import lifecycle
from integrations.destinations import destination_save
from integrations.models import Delivery
from tests.destination_standins import MetronomeStandIn
from tests.factories import api_key_for
from tests.integrations.conftest import make_customer
from tests.processes import CeleryWorker, Gunicorn

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Every periodic task every half second, in both schedulers: they overlap all the time.
FAST = {
    "HUB_DELIVERY_SWEEP_SECONDS": "0.5",
    "HUB_INBOX_SWEEP_SECONDS": "0.5",
    "HUB_INBOX_STALE_SECONDS": "0.5",
    "HUB_ROLLUP_SWEEP_SECONDS": "0.5",
    "HUB_ROLLUP_STALE_SECONDS": "0.5",
    "HUB_DELIVERY_PRUNE_SECONDS": "1",
    "HUB_DELIVERY_BACKOFF_BASE": "0.3",
    "HUB_DELIVERY_BACKOFF_MAX": "1.5",
    "HUB_DELIVERY_TIMEOUT": "2",
    "HUB_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
}

EVENTS_PER_REQUEST = 25
REQUESTS = 40
CLIENTS = 4


def _wait(what: str, done, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.3)
    raise AssertionError(f"not done after {timeout} s: {what}")


def _post_events(
    url: str, app, secret: str, customers: list[str], rounds, sent: list[str], errors: list
) -> None:
    """Usage events over HTTP to the web processes, every request sent twice (a client retry)."""
    session = requests.Session()
    headers = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": secret}
    for r in rounds:
        events = [
            {
                "eventName": "api_call",
                "eventId": f"ev-{r}-{i}",
                "customerId": customers[(r + i) % len(customers)],
                "properties": {"n": i},
            }
            for i in range(EVENTS_PER_REQUEST)
        ]
        for _ in range(2):
            response = session.post(
                f"{url}/v1/usage_events", json={"events": events}, headers=headers, timeout=30
            )
            if response.status_code >= 300:
                errors.append((response.status_code, response.text[:300]))
        sent.extend(e["eventId"] for e in events)


def test_two_schedulers_and_several_processes_deliver_and_count_everything_once(
    workspace, app, segment, standin, tmp_path
):
    metronome_server = MetronomeStandIn(token="mt_secret_1").start()
    try:
        metronome = destination_save(
            workspace=workspace, kind="metronome", name="Metronome", secret="mt_secret_1",
            url=metronome_server.url, apps=[app],
        )  # fmt: skip
        metric = metric_create(
            app=app, definition=definition_validate(name="API calls", event_name="api_call")
        )
        metrics_rebuild(app_pk=app.pk)
        customers = [make_customer(app, f"shop-{i}") for i in range(5)]
        _, secret = api_key_for(app)
        workers = [CeleryWorker(name=f"twobeats-{n}", concurrency=2, **FAST) for n in range(2)]
        for n, worker in enumerate(workers):
            worker.args += ["--beat", "--schedule", str(tmp_path / f"beat-{n}")]
        # Both destinations fail at first: their backlogs are left to the senders the two
        # schedulers' sweeps start, not only sent at fan-out.
        standin.fail_next(3, 500)
        metronome_server.fail_next(3, 503)
        sent: list[str] = []
        errors: list = []
        with Gunicorn(workers=2, name="twobeats", **FAST) as web:
            for worker in workers:
                worker.start()
            try:
                # Several clients at once: the web processes' drain and forward tasks overlap.
                posters = [
                    threading.Thread(
                        target=_post_events,
                        args=(
                            web.url,
                            app,
                            secret,
                            [c.platform_id for c in customers],
                            range(n, REQUESTS, CLIENTS),
                            sent,
                            errors,
                        ),
                    )
                    for n in range(CLIENTS)
                ]
                for poster in posters:
                    poster.start()
                for i, customer in enumerate(customers):  # lifecycle activities meanwhile
                    lifecycle.installation_freeze(customer=customer)
                    lifecycle.installation_reactivate(customer=customer)
                    lifecycle.review_create(customer=customer, rating=5, text=f"Nice {i}")
                    time.sleep(0.2)
                more = [make_customer(app, f"late-{i}") for i in range(10)]
                for poster in posters:
                    poster.join(timeout=180)
                assert not errors, errors[:3]
                activities = list(Activity.objects.filter(app=app).values_list("pk", flat=True))
                assert len(activities) >= 3 * len(customers) + len(more)

                # Every activity reached Segment once; every event reached Metronome once.
                _wait("activities delivered", lambda: len(standin.message_ids()) >= len(activities))
                _wait("events forwarded", lambda: len(metronome_server.counts("transaction_id")) >= len(sent))
                _wait("rollups drained", lambda: not RollupBatch.objects.filter(app=app).exists())
                time.sleep(2)  # a few more rounds of both schedulers: nothing more may arrive
                beats = [w.output().count("Scheduler: Sending due task") for w in workers]
            finally:
                for worker in workers:
                    worker.stop()
        assert all(b > 0 for b in beats), beats  # both schedulers did schedule
        assert standin.message_ids() == Counter({str(pk): 1 for pk in activities})
        assert metronome_server.counts("transaction_id") == Counter({event_id: 1 for event_id in sent})
        assert not metronome_server.violations
        assert Delivery.objects.filter(integration=segment, status="delivered").count() == len(activities)
        assert Delivery.objects.filter(integration=metronome, status="delivered").count() == len(sent)
        assert not ForwardBatch.objects.exists()
        # Each event counted once: the rollups' figures equal the stored events, per customer and
        # in the app's totals (the rows without a customer).
        assert UsageEvent.objects.filter(app=app).count() == len(sent) == REQUESTS * EVENTS_PER_REQUEST
        stored = Counter(UsageEvent.objects.filter(app=app).values_list("customer_id", flat=True))
        stored[None] = len(sent)
        for granularity in (Granularity.DAY, Granularity.HOUR):
            counted: Counter = Counter()
            for customer_id, count in MetricRollup.objects.filter(
                metric=metric, granularity=granularity
            ).values_list("customer_id", "count"):
                counted[customer_id] += count
            assert counted == stored, granularity
    finally:
        metronome_server.stop()
