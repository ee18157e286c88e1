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
