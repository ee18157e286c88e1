"""A metric rebuild holds the app's usage lock across its snapshot and nothing after it: safe
behind a pooler in transaction mode (HUB_TEST_PGBOUNCER=1 runs this through PgBouncer)."""

import threading

import psycopg
import pytest
from django.db import connection

from events.metrics.definitions import definition_validate
from events.metrics.rollup_store import REBUILD_LOCK
from events.metrics.rollups import metrics_rebuild
from events.metrics.services import metric_create
from events.models import Metric
from events.services import usage_events_ingest
from hub.locks import _APP_USAGE, app_usage_lock_held
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _connect(**extra):
    params = connection.get_connection_params()
    return psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None, **extra,
    )  # fmt: skip


def _usage_locks_held(app_pk: int) -> int:
    with _connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid IN (%s, %s) AND objid = %s",
            [_APP_USAGE, REBUILD_LOCK, app_pk],
        ).fetchone()[0]


def _several_server_connections() -> None:
    """Behind the pooler, leave a few idle server connections for consecutive statements to land on."""
    conns = [_connect() for _ in range(4)]
    for conn in conns:
        conn.execute("SELECT 1")  # each in a transaction: each on a server connection of its own
    for conn in conns:
        conn.rollback()  # ended, not dropped: a client leaving mid-transaction takes its server connection
        conn.close()


def test_a_rebuild_leaves_no_lock_behind():
    app = AppFactory()
    usage_events_ingest(app=app, raw_events=[{"eventName": "api_call", "customerId": "shop-1"}])
    metric = metric_create(app=app, definition=definition_validate(name="Calls", event_name="api_call"))
    _several_server_connections()
    assert metrics_rebuild(app_pk=app.pk) == [metric.pk]
    assert _usage_locks_held(app.pk) == 0


def test_a_second_rebuild_returns_at_once_and_a_drain_waits_for_the_first():
    app = AppFactory()
    metric = metric_create(app=app, definition=definition_validate(name="Calls", event_name="api_call"))
    with app_usage_lock_held(app.pk, only_one=REBUILD_LOCK) as held:
        assert held
        assert metrics_rebuild(app_pk=app.pk) == []  # another rebuild of the app is under way
        assert Metric.objects.get(pk=metric.pk).status == Metric.Status.BUILDING
        waited = threading.Event()

        def drain():
            with _connect() as conn:
                conn.execute("SET lock_timeout = '300ms'")
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_APP_USAGE, app.pk])
                except psycopg.errors.LockNotAvailable:
                    waited.set()

        thread = threading.Thread(target=drain)
        thread.start()
        thread.join(10)
        assert waited.is_set()
    assert _usage_locks_held(app.pk) == 0
    assert metrics_rebuild(app_pk=app.pk) == [metric.pk]
