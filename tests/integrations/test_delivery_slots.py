"""Request slots (HUB_DELIVERY_MAX_IN_FLIGHT) hold nothing past their transaction: safe behind a
pooler in transaction mode, where a session lock could outlive its holder (docs/scaling.md)."""

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from integrations.delivery_store import _SEND_SLOTS, store

pytestmark = pytest.mark.django_db(transaction=True)


def _slots_held(integration_id: int) -> int:
    """Slots of the integration locked by any server connection, seen from a connection of our own."""
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None, autocommit=True,
    ) as conn:  # fmt: skip
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid BETWEEN %s AND %s AND granted",
            [_SEND_SLOTS, integration_id * 64, integration_id * 64 + 63],
        ).fetchone()[0]


def test_a_slot_is_held_to_the_end_of_its_transaction_and_no_longer(segment):
    with transaction.atomic():
        with store().send_slot(integration_id=segment.pk, slots=2) as ok:
            assert ok
            assert _slots_held(segment.pk) == 1
        assert _slots_held(segment.pk) == 1  # until commit: the request's outcome is written first
    assert _slots_held(segment.pk) == 0


def test_a_slot_is_free_again_after_its_transaction_failed_on_a_database_error(segment):
    """The holder's own transaction broke: no statement can release anything any more."""
    with (
        pytest.raises(DatabaseError),
        transaction.atomic(),
        store().send_slot(integration_id=segment.pk, slots=1) as ok,
    ):
        assert ok
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
    assert _slots_held(segment.pk) == 0
    with transaction.atomic(), store().send_slot(integration_id=segment.pk, slots=1) as ok:
        assert ok


def test_all_slots_taken_elsewhere_means_no_slot(segment):
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None,
    ) as other:  # fmt: skip
        for slot in range(2):
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_SEND_SLOTS, segment.pk * 64 + slot])
        with transaction.atomic(), store().send_slot(integration_id=segment.pk, slots=2) as ok:
            assert not ok
        other.rollback()
    with transaction.atomic(), store().send_slot(integration_id=segment.pk, slots=2) as ok:
        assert ok


def test_a_slot_outside_a_transaction_is_refused(segment):
    with pytest.raises(RuntimeError), store().send_slot(integration_id=segment.pk, slots=1):
        pass
