"""`xact_lock_first_free`: the first free advisory lock of several, held until the transaction ends."""

import threading

import psycopg
import pytest
from django.db import connection, transaction

from hub.locks import xact_lock_first_free

pytestmark = pytest.mark.django_db(transaction=True)

CLASS = 7399  # a lock class no code of the hub uses


def _other() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None,
    )  # fmt: skip


def test_it_takes_the_first_key_no_one_holds_and_releases_it_at_commit():
    other = _other()
    try:
        other.execute("SELECT pg_advisory_xact_lock(%s, 1)", [CLASS])  # held by another transaction
        with transaction.atomic(), connection.cursor() as cursor:
            assert xact_lock_first_free(cursor, CLASS, [1, 2, 3]) == 2
            assert other.execute("SELECT pg_try_advisory_xact_lock(%s, 2)", [CLASS]).fetchone()[0] is False
        # Committed: key 2 is free again (and key 1 still the other's).
        assert other.execute("SELECT pg_try_advisory_xact_lock(%s, 2)", [CLASS]).fetchone()[0] is True
    finally:
        other.rollback()
        other.close()


def test_none_when_every_key_is_held_waiting_or_not():
    other = _other()
    try:
        other.execute("SELECT pg_advisory_xact_lock(%s, 1), pg_advisory_xact_lock(%s, 2)", [CLASS, CLASS])
        with transaction.atomic(), connection.cursor() as cursor:
            assert xact_lock_first_free(cursor, CLASS, [1, 2]) is None
            assert xact_lock_first_free(cursor, CLASS, [1, 2], wait=0.1) is None
    finally:
        other.rollback()
        other.close()


def test_a_key_freed_while_it_waits_is_taken():
    other = _other()
    try:
        other.execute("SELECT pg_advisory_xact_lock(%s, 5)", [CLASS])
        with transaction.atomic(), connection.cursor() as cursor:
            threading.Timer(0.05, other.rollback).start()
            assert xact_lock_first_free(cursor, CLASS, [5], wait=5.0) == 5
    finally:
        other.close()
