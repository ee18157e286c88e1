"""A Celery round trip through a real worker process on Redis (not eager mode)."""

import pytest

from hub.tasks import ping
from tests.processes import CeleryWorker

pytestmark = pytest.mark.worker


def test_round_trip_through_a_real_worker():
    with CeleryWorker(name="roundtrip") as worker:
        result = ping.delay("hello")
        assert result.get(timeout=30) == "pong:hello"
        assert "hub.ping" in worker.output()


def test_worker_logs_go_through_the_redaction_filter():
    """Celery logs task results; a key in one must not reach the worker's log."""
    secret = "hub_live_AbCdEfGhIjKl_" + "s" * 40
    with CeleryWorker(name="redaction") as worker:
        assert ping.delay(secret).get(timeout=30) == f"pong:{secret}"
        worker.stop()
        output = worker.output()
    assert "hub.ping" in output and "succeeded" in output
    assert secret not in output and "s" * 40 not in output


def test_a_pool_process_freezes_what_it_starts_with():
    """Each pool process moves its starting objects out of the collector's reach (hub.celery)."""
    import gc

    from celery.signals import worker_process_init

    import hub.celery  # noqa: F401 - connects the handler

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        worker_process_init.send(sender=None)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
