"""Chaos: ingest and delivery continue through killed gunicorn and Celery workers, a restarted Redis
and a crashed PostgreSQL.

Short in CI (CHAOS_SECONDS, default 20; about a minute in all); `make chaos` runs it for 5 minutes.
"""

import os

import pytest

from tests.chaos.harness import run_chaos

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "20"))

pytestmark = [pytest.mark.chaos, pytest.mark.worker]


# Start-up, the final delivery wait and teardown come on top of the faults' time.
@pytest.mark.timeout(CHAOS_SECONDS + 300)
def test_events_and_activities_survive_killed_workers_and_restarted_servers(tmp_path):
    """Every event answered 2xx is stored exactly once; every lifecycle change answered 2xx has its
    activity; every activity reaches Segment at least once, duplicates only under its messageId."""
    report = run_chaos(tmp_path, seconds=CHAOS_SECONDS)
    for line in report.lines():
        print(line)
    assert report.faults["kill_web_worker"] >= 2 and report.faults["kill_celery_worker"] >= 1
    assert report.faults["restart_postgres"] >= 1 and report.faults["restart_redis"] >= 1
    assert report.events_acked > 0 and report.events_stored == report.events_acked
    assert report.activities_stored >= report.lifecycle_ok > 0
    assert report.activities_delivered == report.activities_stored
