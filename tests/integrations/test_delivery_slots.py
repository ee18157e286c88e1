"""Request slots (HUB_DELIVERY_MAX_IN_FLIGHT) hold nothing past their transaction: safe behind a
pooler in transaction mode, where a session lock could outlive its holder (docs/scaling.md). A
backlog's fan-out waits for one rather than leave its chunk to senders, and a backlog is fanned
out by at most HUB_DELIVERY_PARALLEL fan-outs at once."""

import threading
import time

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from hub.models import Activity, ActivityOutbox
from integrations import delivery_fanout
from integrations.delivery_fanout import BACKLOG_CHUNK
from integrations.delivery_rows import FANOUT_SLOTS, SEND_SLOTS
from integrations.delivery_store import store
from integrations.delivery_store_pg import PostgresStore
from integrations.models import Delivery
from tests.integrations.conftest import make_customer

pytestmark = pytest.mark.django_db(transaction=True)


def _slots_held(integration_id: int) -> int:
    """Slots of the integration locked by any server connection, seen from a connection of our own."""
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None, autocommit=True,
    ) as conn:  # fmt: skip
        return conn.execute(
            # Advisory locks are per database; other databases of the server (parallel runs) hold theirs.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid BETWEEN %s AND %s AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [SEND_SLOTS, integration_id * 64, integration_id * 64 + 63],
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
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_SLOTS, segment.pk * 64 + slot])
        with transaction.atomic(), store().send_slot(integration_id=segment.pk, slots=2) as ok:
            assert not ok
        other.rollback()
    with transaction.atomic(), store().send_slot(integration_id=segment.pk, slots=2) as ok:
        assert ok


def test_a_slot_outside_a_transaction_is_refused(segment):
    with pytest.raises(RuntimeError), store().send_slot(integration_id=segment.pk, slots=1):
        pass


def _backlog(app, count: int) -> None:
    """`count` activities recorded in one go (as an import or a long broker outage leaves them)."""
    customer = make_customer(app, "backlog")
    Activity.objects.filter(customer=customer).delete()
    Activity.objects.bulk_create(
        [
            Activity(app=app, customer=customer, kind="reviewed", properties={"rating": 5})
            for _ in range(count)
        ]
    )


def _other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port"),
        prepare_threshold=None,
    )  # fmt: skip


def test_a_backlogs_fan_out_waits_for_a_request_slot_and_sends_its_chunk_itself(
    segment, app, standin, settings
):
    """Written pending, a delivery takes three writes (insert, a sender's claim, its update)."""
    settings.HUB_DELIVERY_SLOT_WAIT = 5.0
    _backlog(app, BACKLOG_CHUNK)
    with _other_connection() as other:
        for slot in range(2):
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_SLOTS, segment.pk * 64 + slot])
        threading.Timer(0.5, other.rollback).start()  # the requests in flight end
        started = time.monotonic()
        created = delivery_fanout.activities_fanout()
        waited = time.monotonic() - started
    assert created == {segment.pk: BACKLOG_CHUNK} and not created.waiting
    assert waited >= 0.5
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert len(standin.messages) == BACKLOG_CHUNK


def test_a_backlogs_fan_out_writes_its_chunk_pending_when_no_slot_frees_in_time(
    segment, app, standin, settings
):
    settings.HUB_DELIVERY_SLOT_WAIT = 0.2
    _backlog(app, BACKLOG_CHUNK)
    with _other_connection() as other:
        for slot in range(2):
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_SLOTS, segment.pk * 64 + slot])
        created = delivery_fanout.activities_fanout()
        other.rollback()
    assert created.waiting == {segment.pk}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    assert not standin.messages


def test_a_few_new_activities_never_wait_for_a_slot(segment, app, standin, settings):
    settings.HUB_DELIVERY_SLOT_WAIT = 5.0
    _backlog(app, 3)
    with _other_connection() as other:
        for slot in range(2):
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_SLOTS, segment.pk * 64 + slot])
        started = time.monotonic()
        created = delivery_fanout.activities_fanout()
        assert time.monotonic() - started < 1.0
        other.rollback()
    assert created.waiting == {segment.pk}


def test_a_backlog_is_fanned_out_by_at_most_parallel_fan_outs_at_once(segment, app, standin, settings):
    """A task that finds HUB_DELIVERY_PARALLEL fan-outs of the backlog running leaves it to them."""
    settings.HUB_DELIVERY_PARALLEL = 2
    _backlog(app, 10)
    with _other_connection() as other:
        for slot in range(2):
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [FANOUT_SLOTS, slot])
        assert delivery_fanout.activities_fanout() == {}
        assert ActivityOutbox.objects.count() == 10
        other.rollback()
    assert delivery_fanout.activities_fanout() == {segment.pk: 10}


def test_a_backlogs_request_slot_is_held_while_its_requests_are_in_flight_not_through_its_writes(
    segment, app, standin, monkeypatch
):
    """The next chunk's requests need not wait for this one's insert and commit."""
    held: dict[str, int] = {}
    standin.on_request = lambda server: held.setdefault("in flight", _slots_held(segment.pk))
    insert = PostgresStore.deliveries_insert

    def insert_and_look(self, **kwargs):
        held.setdefault("writing", _slots_held(segment.pk))
        return insert(self, **kwargs)

    monkeypatch.setattr(PostgresStore, "deliveries_insert", insert_and_look)
    _backlog(app, BACKLOG_CHUNK)
    assert delivery_fanout.activities_fanout() == {segment.pk: BACKLOG_CHUNK}
    assert held == {"in flight": 1, "writing": 0}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
