"""The hot paths' cursor: Django's health check without its round trip on a quiet idle connection
(and with it, reconnecting, when the server ended the connection), one idle cursor reused; and the
statements sent through libpq directly outside a transaction."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

import psycopg
import pytest
from django.db import DataError, OperationalError, ProgrammingError, connection, transaction

from hub import raw_cursor as raw_cursor_module
from hub.raw_cursor import DirectStatement, raw_cursor
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


# DirectStatement: one hot statement through libpq itself, outside a transaction.
TWO_COLUMNS = (
    "SELECT %s::text || '!', %s::bigint + 1, %s::timestamptz, %s::boolean, %s::text IS NULL, '100%%'"
)


def direct_statement(sql: str = TWO_COLUMNS) -> DirectStatement:
    return DirectStatement("test_two_columns", sql, (bytes.decode, int, bytes.decode, b"t".__eq__, b"t".__eq__,
                                                     bytes.decode))  # fmt: skip


def prepared_names() -> set[str]:
    with raw_cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@contextmanager
def direct_path_refused():
    """Fails the test if a statement goes through libpq directly meanwhile."""
    run = DirectStatement._run

    def refused(*args):
        raise AssertionError("sent directly")

    DirectStatement._run = refused  # type: ignore[method-assign]
    try:
        yield
    finally:
        DirectStatement._run = run  # type: ignore[method-assign]


def test_a_direct_statement_sends_text_values_and_decodes_its_columns(health_checks):
    at = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    statement = direct_statement()
    connection.ensure_connection()
    with statements_with_params() as sent:
        rows = statement.rows(["héllo", 41, at, True, None])
    assert rows == [("héllo!", 42, "2026-01-02 03:04:05.6+00", True, True, "100%")]
    assert sent == [(TWO_COLUMNS, ["héllo", 41, at, True, None])]  # recorded as the direct path
    assert "hub_test_two_columns" in prepared_names()  # prepared once on this connection
    assert statement.rows(["again", 1, at, False, "x"]) == [("again!", 2, "2026-01-02 03:04:05.6+00", False,
                                                             False, "100%")]  # fmt: skip


def test_a_direct_statement_is_prepared_again_after_a_deallocate(health_checks):
    statement = direct_statement()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    statement.rows(["a", 1, at, True, None])
    with raw_cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert statement.rows(["b", 2, at, True, None])[0][:2] == ("b!", 3)


def test_a_direct_statement_is_not_prepared_without_a_prepare_threshold(health_checks, monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    statement = direct_statement()
    assert statement.rows(["a", 1, datetime(2026, 1, 1, tzinfo=UTC), True, None])[0][:2] == ("a!", 2)
    assert "hub_test_two_columns" not in prepared_names()


def test_inside_a_transaction_a_direct_statement_goes_through_the_cursor_and_rolls_back(health_checks):
    connection.ensure_connection()
    with raw_cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE direct_t (v text)")
    insert = DirectStatement("test_insert", "INSERT INTO direct_t VALUES (%s) RETURNING v", (bytes.decode,))
    with direct_path_refused(), pytest.raises(RuntimeError), transaction.atomic():
        assert insert.rows(["in a transaction"]) == [("in a transaction",)]
        raise RuntimeError("roll back")
    assert "hub_test_insert" not in prepared_names()
    assert insert.rows(["outside"]) == [("outside",)]
    with raw_cursor() as cursor:
        cursor.execute("SELECT v FROM direct_t")
        assert cursor.fetchall() == [("outside",)]


def test_a_nul_or_an_unknown_type_goes_through_psycopg_and_its_refusal(health_checks):
    statement = DirectStatement("test_echo", "SELECT %s::text", (bytes.decode,))
    with pytest.raises(DataError):  # psycopg refuses a NUL in text: nothing is cut short
        statement.rows(["before\x00after"])
    assert statement.rows([Decimal("1.5")]) == [("1.5",)]  # psycopg's own row
    assert "hub_test_echo" not in prepared_names()


def test_errors_of_a_direct_statement_are_djangos_with_the_sqlstate(health_checks):
    statement = DirectStatement("test_fail", "SELECT 1 / %s::int", (int,))
    assert statement.rows([1]) == [(1,)]
    with pytest.raises(DataError) as failed:
        statement.rows([0])
    assert failed.value.__cause__.sqlstate == "22012"  # division_by_zero
    assert statement.rows([1]) == [(1,)]  # the connection goes on


def test_a_direct_statement_on_a_connection_the_server_ended_raises_an_operational_error(health_checks):
    statement = DirectStatement("test_gone", "SELECT %s::int", (int,))
    pid = select_backend_pid()  # this request's health check is done: nothing looks again
    with psycopg.connect(**connection.get_connection_params()) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)
    with pytest.raises(OperationalError):
        statement.rows([1])
    new_request()  # Django closes the broken connection at the end of the request
    assert select_backend_pid() != pid
    assert statement.rows([7]) == [(7,)]


class Size(int, Enum):  # an int whose str() is its name
    LARGE = 3


def test_a_direct_statement_sends_an_int_subclass_as_its_number(health_checks):
    statement = DirectStatement("test_enum", "SELECT %s::int + 1, %s::text", (int, bytes.decode))
    assert statement.rows([Size.LARGE, "x"]) == [(4, "x")]


def test_a_direct_statement_refuses_other_placeholders_and_a_wrong_number_of_values(health_checks):
    with pytest.raises(ValueError, match="placeholders"):
        DirectStatement("test_named", "SELECT %(a)s", (int,))
    statement = DirectStatement("test_count", "SELECT %s::int, '%%s'", (int, bytes.decode))
    assert statement.rows([1]) == [(1, "%s")]
    with pytest.raises(ProgrammingError):
        statement.rows([1, 2])


def test_a_statement_already_prepared_on_the_connection_is_used(health_checks):
    statement = DirectStatement("test_again", "SELECT %s::int * 2", (int,))
    assert statement.rows([2]) == [(4,)]
    raw_cursor_module._PREPARED.clear()  # as a new holder of the same connection would know nothing
    assert statement.rows([3]) == [(6,)]  # the server's "already exists" (42P05) is as good


def test_an_open_transaction_or_another_encoding_goes_through_the_cursor(health_checks):
    statement = DirectStatement("test_states", "SELECT %s::text", (bytes.decode,))
    connection.ensure_connection()
    with direct_path_refused():
        with raw_cursor() as cursor:
            cursor.execute("BEGIN")  # a transaction Django does not know about
        assert statement.rows(["in it"]) == [("in it",)]
        with raw_cursor() as cursor:
            cursor.execute("ROLLBACK")
            cursor.execute("SET client_encoding TO 'LATIN1'")
        try:
            assert statement.rows(["é"]) == [("é",)]  # psycopg encodes for the connection's encoding
        finally:
            with raw_cursor() as cursor:
                cursor.execute("SET client_encoding TO 'UTF8'")
    assert statement.rows(["é"]) == [("é",)]
