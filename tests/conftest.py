import os
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client

from tests.clock import Clock
from tests.factories import AppFactory, MembershipFactory, UserFactory, api_key_for


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def workspace(user):
    return MembershipFactory(user=user).workspace


@pytest.fixture
def app(workspace):
    return AppFactory(workspace=workspace)


@pytest.fixture
def api_key(app):
    """(ApiKey, secret) of `app`."""
    return api_key_for(app)


@pytest.fixture
def api_client(app, api_key):
    """A Django test client sending the app's Mantle-style credentials on every request."""
    return Client(headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]})


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def customer(app):
    """A customer of `app` made by identify ("shop-1")."""
    from hub.services.customers import customer_identify

    return customer_identify(app=app, platform_id="shop-1", name="Shop One").customer


@pytest.fixture
def plans(app):
    """(Basic, Pro) plans of `app`: 9.99 monthly and 29 annual."""
    from hub.services.plans import plan_upsert

    basic, _ = plan_upsert(app=app, name="Basic", amount="9.99")
    pro, _ = plan_upsert(app=app, name="Pro", amount=29, interval="ANNUAL")
    return basic, pro


@pytest.fixture
def source(app):
    """A Segment source of `app` with the default presets (Mantle track, ChartMogul identify/group)."""
    from integrations.sources.services import source_create

    return source_create(app=app, name="Segment")


@pytest.fixture
def fresh_counters():
    """The rate-limit counters in the test run's Redis, emptied first: counters of earlier tests (and
    runs: ids restart with each test database) must not count. Yields the Redis client."""
    import redis
    from django.conf import settings

    from hub import rate_limits

    client = redis.Redis.from_url(settings.HUB_RATE_LIMIT_REDIS_URL)
    for key in client.scan_iter(f"{rate_limits.KEY_PREFIX}*"):
        client.delete(key)
    yield client


@pytest.fixture
def clock(monkeypatch):
    """A `Clock` for tests that would otherwise sleep until a timeout or a window passes."""
    real_monotonic, real_monotonic_ns = time.monotonic, time.monotonic_ns
    with time_machine.travel(datetime.now(UTC), tick=True) as traveller:
        moved = Clock(traveller)
        monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + moved.offset)
        monkeypatch.setattr(time, "monotonic_ns", lambda: real_monotonic_ns() + int(moved.offset * 1e9))
        yield moved
        monkeypatch.undo()


@pytest.fixture(autouse=True)
def _every_hour_row_kept(settings):
    """The metric tests read with a fixed clock days in the past: keep their hour rows.

    Pruning old hour rows is tested on its own (tests/events/test_rollups_sql.py).
    """
    settings.HUB_METRICS_HOUR_ROWS_HOURS = 0


@pytest.fixture(autouse=True)
def _fresh_reference_cache():
    """Customer-reference caching is per process; tests must not see each other's ids."""
    from hub.services.accounts import api_key_cache_clear
    from hub.services.customer_refs import reference_cache_clear

    reference_cache_clear()
    api_key_cache_clear()
    yield
    reference_cache_clear()
    api_key_cache_clear()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, tmp_path_factory):
    """With HUB_TEST_PGBOUNCER=1, the run goes through a private PgBouncer in transaction mode.

    pytest-django creates (and at the end drops) the test database on PostgreSQL directly; only
    then do this process and every worker or server it starts (tests/processes.py reads these
    settings) connect through PgBouncer, as the hub does with DATABASE_TRANSACTION_POOLING=1.
    """
    if os.environ.get("HUB_TEST_PGBOUNCER", "") in ("", "0"):
        yield
        return
    from django.conf import settings
    from django.db import connections

    from tests.private_services import PrivatePgBouncer

    db = connections["default"]
    direct = {
        key: db.settings_dict.get(key) for key in ("HOST", "PORT", "OPTIONS", "DISABLE_SERVER_SIDE_CURSORS")
    }
    bouncer = PrivatePgBouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        pg_host=direct["HOST"] or "127.0.0.1",
        pg_port=int(direct["PORT"] or 5432),
    ).start()
    with django_db_blocker.unblock():
        db.close()
    through = {
        "HOST": "127.0.0.1",
        "PORT": str(bouncer.port),
        "OPTIONS": {**(direct["OPTIONS"] or {}), "prepare_threshold": None},
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
    db.settings_dict.update(through)
    settings.DATABASES["default"].update(through)
    os.environ["DATABASE_TRANSACTION_POOLING"] = "1"
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            db.close()
        db.settings_dict.update(direct)
        settings.DATABASES["default"].update(direct)
        os.environ.pop("DATABASE_TRANSACTION_POOLING", None)
        bouncer.stop()
