"""A real Celery worker SIGKILLed while processing the inbox: every message ends stored exactly once."""

import time

import pytest

from events.models import UsageEvent
from hub.celery import app as celery_app
from integrations.sources.models import InboxMessage
from integrations.sources.receipt import inbox_receive
from integrations.sources.services import source_create
from integrations.sources.tasks import inbox_drain, inbox_sweep
from tests.factories import AppFactory
from tests.processes import CeleryWorker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Enough that a fast worker is still mid-way when the test sees 200 done and kills it (4,000 were
# all processed before the kill landed once, on a fast machine).
N = 12000


def _wait(predicate, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkilled_worker_loses_nothing_and_stores_nothing_twice():
    app = AppFactory()
    source = source_create(app=app, name="Segment")
    for start in range(0, N, 500):
        batch = [
            {
                "type": "track",
                "event": "Job Ran",
                "userId": "u",
                "messageId": f"kill-{i}",
                "properties": {"shop": f"shop-{i % 7}", "i": i},
            }
            for i in range(start, start + 500)
        ]
        assert inbox_receive(source=source, items=batch, format_kind="segment").accepted == 500
    processed = InboxMessage.objects.filter(source=source, status="processed")
    celery_app.control.purge()  # the receipts' drain tasks: this test starts the drain itself

    env = {"HUB_INBOX_BATCH_SIZE": "100", "HUB_INBOX_STALE_SECONDS": "0"}
    first = CeleryWorker(name="inbox-kill", **env).start()
    try:
        inbox_drain.delay()
        _wait(lambda: processed.count() >= 200, 60, "the first worker to process some batches")
        first.kill()  # SIGKILL to the whole process group, mid-way through the inbox
    finally:
        first.stop()
    done_by_first = processed.count()
    assert 0 < done_by_first < N, "the kill must land while messages are still pending"
    celery_app.control.purge()  # nothing left in the broker: only the sweep can bring the rest back

    with CeleryWorker(name="inbox-after-kill", **env):
        # What beat does every HUB_INBOX_SWEEP_SECONDS: the killed worker's task is not coming back.
        assert inbox_sweep.delay().get(timeout=30) > 0
        _wait(lambda: processed.count() == N, 120, "every message to be processed", step=0.2)

    assert UsageEvent.objects.filter(app=app).count() == N
    assert set(UsageEvent.objects.filter(app=app).values_list("event_id", flat=True)) == {
        f"kill-{i}" for i in range(N)
    }
    # Stored, never "duplicate": no batch of the killed worker was half-committed.
    assert set(InboxMessage.objects.filter(source=source).values_list("outcome", flat=True)) == {"stored"}
