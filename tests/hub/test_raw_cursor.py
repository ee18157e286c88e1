"""The hot paths' cursor: Django's health check without its round trip on a quiet idle connection
(and with it, reconnecting, when the server ended the connection), one idle cursor reused."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
from django.db import ProgrammingError, connection

from hub.raw_cursor import raw_cursor
from tests.query_plans import statements_with_params

pytestmark = pytest.mark.django_db(transaction=True)


def new_request() -> None:
    """What Django does between two requests of a persistent connection."""
    connection.close_if_unusable_or_obsolete()


def sent_during(fn) -> list[str]:
    with statements_with_params() as sent:
        fn()
    return [query for query, _ in sent]


def select_backend_pid() -> int:
    with raw_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def health_checks():
    """A persistent connection with health checks, as the hub's settings make it."""
    kept = {key: connection.settings_dict[key] for key in ("CONN_HEALTH_CHECKS", "CONN_MAX_AGE")}
    connection.close()
    connection.settings_dict.update(CONN_HEALTH_CHECKS=True, CONN_MAX_AGE=60)
    yield
    connection.close()
    connection.settings_dict.update(kept)


def test_a_quiet_idle_connection_is_used_without_a_select_1(health_checks):
    select_backend_pid()
    new_request()
    assert connection.health_check_enabled and not connection.health_check_done
    assert sent_during(select_backend_pid) == ["SELECT pg_backend_pid()"]
    assert connection.health_check_done


@pytest.mark.skipif(
    os.environ.get("HUB_TEST_PGBOUNCER", "") not in ("", "0"),
    reason="through PgBouncer the client's connection outlives the server's: nothing to replace",
)
def test_a_connection_the_server_ended_is_replaced_before_use(health_checks):
    pid = select_backend_pid()
    new_request()
    with psycopg.connect(**connection.get_connection_params()) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the server's goodbye reaches the socket
    sent = sent_during(lambda: pytest.fail("same backend") if select_backend_pid() == pid else None)
    assert sent[0] == "SELECT 1"  # Django's check ran, failed, and the connection was replaced


def test_one_idle_cursor_is_reused_and_a_nested_use_gets_its_own(health_checks):
    with raw_cursor() as first:
        with raw_cursor() as nested:
            assert nested is not first
            nested.execute("SELECT 1")
        first.execute("SELECT 2")
        assert first.fetchone() == (2,)
    with raw_cursor() as again:
        assert again in (first, nested)
        again.execute("SELECT 3")


def test_a_cursor_whose_use_failed_is_not_reused(health_checks):
    with pytest.raises(ProgrammingError), raw_cursor() as failed:
        failed.execute("SELECT no_such_column")
    with raw_cursor() as cursor:
        assert cursor is not failed and failed.closed
        cursor.execute("SELECT 1")
