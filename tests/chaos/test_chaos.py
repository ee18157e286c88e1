"""Chaos: ingest continues through killed web workers, a restarted Redis and a crashed PostgreSQL.

Short in CI (CHAOS_SECONDS, default 20); `make chaos` runs it for 5 minutes.
"""

import os

import pytest

from tests.chaos.harness import run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.worker]


def test_every_event_answered_2xx_is_stored_exactly_once_through_faults(tmp_path):
    report = run_chaos(tmp_path, seconds=float(os.environ.get("CHAOS_SECONDS", "20")))
    for line in report.lines():
        print(line)
    assert report.faults["restart_postgres"] >= 1 and report.faults["restart_redis"] >= 1
    assert report.faults["kill_web_worker"] >= 2
    assert report.events_acked > 0 and report.events_stored == report.events_acked
