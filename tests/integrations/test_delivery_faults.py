"""Delivery through real Celery workers (with the beat scheduler) while the stand-in misbehaves,
a worker is SIGKILLed mid-batch and Redis restarts: every activity arrives, duplicates only
under the same messageId."""

import threading
import time
from pathlib import Path

import pytest

from hub.models import Activity
from hub.services import lifecycle
from integrations.models import Delivery
from tests.integrations.conftest import all_eleven, make_customer
from tests.private_services import PrivateRedis
from tests.processes import CeleryWorker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST = {
    "HUB_DELIVERY_SWEEP_SECONDS": "0.5",
    "HUB_DELIVERY_BACKOFF_BASE": "0.3",
    "HUB_DELIVERY_BACKOFF_MAX": "1.5",
    "HUB_DELIVERY_TIMEOUT": "1",
    "HUB_DELIVERY_SEND_BUDGET": "5",
    "HUB_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
}


def worker_with_beat(name: str, tmp_path: Path, concurrency: int = 2, **env) -> CeleryWorker:
    worker = CeleryWorker(name=name, concurrency=concurrency, **{**FAST, **env})
    worker.args += ["--beat", "--schedule", str(tmp_path / f"beat-{name}")]
    return worker


def assert_each_activity_once_by_id(standin, activities):
    """Every activity arrived; a duplicate is only ever a resend of the same message."""
    standin.assert_each_once_by_id(a.pk for a in activities)


def wait_delivered(integration, count, timeout=40, supervised: CeleryWorker | None = None) -> int:
    """Wait until `count` of the integration's deliveries are delivered. With `supervised`, start
    that worker again whenever it exits, as the process supervisor docs/scaling.md asks for (and
    `hub_run`) would, and return how many times: only Celery's exit on kombu's Redis reconnection
    race ("Unrecoverable error": celery/celery#10205, #9054) is accepted, any other fails."""
    restarts = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervised is not None and supervised.proc.poll() is not None:
            output = supervised.output()
            assert "Unrecoverable error" in output, output[-3000:]
            supervised.stop()
            supervised.start()
            restarts += 1
        if Delivery.objects.filter(integration=integration, status="delivered").count() == count:
            return restarts
        time.sleep(0.2)
    statuses = list(Delivery.objects.filter(integration=integration).values_list("status", "last_error"))
    delivered = sum(1 for status, _ in statuses if status == "delivered")
    raise AssertionError(
        f"{delivered} of {count} delivered after {timeout} s ({restarts} restarts): {statuses[:5]}"
    )


@pytest.mark.parametrize(
    "fault",
    ["500", "429", "hang", "refused"],
)
def test_faults_then_recovery_every_activity_arrives(fault, segment, app, standin, tmp_path):
    if fault == "500":
        standin.fail_next(3, 500)
    elif fault == "429":
        standin.fail_next(2, 429, {"Retry-After": "1"})
    elif fault == "hang":
        standin.hang_next(2, 2.5)  # past the 1 s timeout
    else:
        standin.stop()
    with worker_with_beat(f"fault{fault}", tmp_path) as worker:
        all_eleven(app)
        for i in range(20):
            make_customer(app, f"more-{i}")
        if fault == "refused":
            time.sleep(2)
            assert not standin.messages
            standin.start()
        activities = list(Activity.objects.filter(app=app))
        wait_delivered(segment, len(activities))
        assert_each_activity_once_by_id(standin, activities)
        retried = Delivery.objects.filter(integration=segment, attempts__gt=1).count()
        assert retried > 0, worker.output()[-2000:]


def test_a_worker_killed_mid_batch_loses_nothing(segment, app, standin, tmp_path):
    killed = threading.Event()
    worker = worker_with_beat("sigkill", tmp_path)

    lock = threading.Lock()

    def kill_on_first_request(server):
        with lock:
            if not killed.is_set():
                worker.kill()  # SIGKILL to the whole process group, while this request is in flight
                killed.set()

    standin.on_request = kill_on_first_request
    customers = [make_customer(app, f"k-{i}") for i in range(30)]
    worker.start()
    try:
        assert killed.wait(30), worker.output()[-2000:]
        standin.on_request = None
        assert worker.proc.poll() is not None
        with worker_with_beat("sigkill-2", tmp_path):
            activities = list(Activity.objects.filter(app=app))
            assert len(activities) == len(customers)
            wait_delivered(segment, len(activities))
            assert_each_activity_once_by_id(standin, activities)
            # The killed batch had reached Segment unanswered: it was sent again, same messageIds.
            assert max(standin.message_ids().values()) == 2
    finally:
        worker.stop()


def test_redis_restarted_mid_run_loses_nothing(segment, app, standin, tmp_path):
    """A private Redis (the shared one serves other runs): queued tasks vanish with it."""
    redis = PrivateRedis(tmp_path).start()
    try:
        url = redis.url
        with worker_with_beat("redis", tmp_path, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url) as worker:
            first = [make_customer(app, f"r1-{i}") for i in range(10)]
            wait_delivered(segment, len(first), timeout=60)
            redis.stop()  # the broker and everything queued in it are gone
            for i in range(10):
                lifecycle.installation_uninstall(customer=first[i])
            time.sleep(1)
            redis.start()  # same port, empty
            activities = list(Activity.objects.filter(app=app))
            # The worker and beat reconnect with backoff: on a loaded machine that takes a while.
            # Or the worker exits on kombu's reconnection race and its supervisor starts it again.
            wait_delivered(segment, len(activities), timeout=120, supervised=worker)
            assert_each_activity_once_by_id(standin, activities)
    finally:
        redis.stop()
