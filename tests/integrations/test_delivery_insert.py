"""New deliveries go in by a plain insert, and a message whose delivery is there already is kept as
it was, whether the caller said it might be (`may_exist`, a backfill) or not (a fan-out, whose plain
insert then conflicts and is done again in its savepoint's place)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from integrations.delivery_rows import NewDelivery
from integrations.delivery_store import store
from integrations.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


def _new(integration_id: int, message_id: str, status: str = "pending") -> NewDelivery:
    return NewDelivery(
        integration_id=integration_id,
        item_kind=Delivery.ItemKind.ACTIVITY,
        item_id=message_id,
        action="",
        message_id=message_id,
        message=f'{{"messageId": "{message_id}"}}',
        status=status,
    )


def _insert(rows: list[NewDelivery], **kwargs) -> dict[int, int]:
    return store().deliveries_insert(rows=rows, now=timezone.now(), **kwargs)


@pytest.mark.parametrize("may_exist", [False, True])
@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_delivery_there_already_is_kept_and_the_new_ones_go_in(segment, may_exist, in_transaction):
    first = _new(segment.pk, "m-1", status="delivered")
    assert _insert([first]) == {segment.pk: 1}
    again = [_new(segment.pk, "m-1"), _new(segment.pk, "m-2"), _new(segment.pk, "m-3")]
    if in_transaction:
        with transaction.atomic():
            created = _insert(again, may_exist=may_exist)
            # The transaction is still usable: the failed plain insert was its savepoint's only.
            assert Delivery.objects.filter(integration=segment).count() == 3
    else:
        created = _insert(again, may_exist=may_exist)
    assert created == {segment.pk: 2}
    rows = dict(Delivery.objects.filter(integration=segment).values_list("message_id", "status"))
    assert rows == {"m-1": "delivered", "m-2": "pending", "m-3": "pending"}


def test_new_deliveries_take_the_plain_insert_and_only_a_conflict_the_other(segment, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statements")
    inserts: list[str] = []
    execute = psycopg.Cursor.execute

    def watch(cursor, query, params=None, **kwargs):
        if "INSERT INTO integrations_delivery" in str(query):
            inserts.append("on conflict" if "ON CONFLICT" in str(query) else "plain")
        return execute(cursor, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", watch)
    assert _insert([_new(segment.pk, "n-1"), _new(segment.pk, "n-2")]) == {segment.pk: 2}
    assert inserts == ["plain"]
    inserts.clear()
    assert _insert([_new(segment.pk, "n-2"), _new(segment.pk, "n-3")]) == {segment.pk: 1}
    assert inserts == ["plain", "on conflict"]
    inserts.clear()
    assert _insert([_new(segment.pk, "n-3"), _new(segment.pk, "n-4")], may_exist=True) == {segment.pk: 1}
    assert inserts == ["on conflict"]


def test_columns_equal_to_another_share_its_array_and_each_row_keeps_its_own_values(segment, monkeypatch):
    """A column whose values are another's of its type (an activity's item id is its message id)
    is read from that column's array, one array fewer to send; a column that differs in one row
    gets its own, and every row is stored with its own values either way."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statements")
    queries: list[str] = []
    execute = psycopg.Cursor.execute

    def watch(cursor, query, params=None, **kwargs):
        if "INSERT INTO integrations_delivery" in str(query):
            queries.append(str(query))
        return execute(cursor, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", watch)
    same = [_new(segment.pk, f"s-{i}") for i in range(3)]
    assert _insert(same) == {segment.pk: 3}
    assert "t.message_id" not in queries[-1] and "t.item_id" in queries[-1]
    differ = [_new(segment.pk, f"d-{i}") for i in range(3)]
    differ[1].item_id = "other-item"
    assert _insert(differ) == {segment.pk: 3}
    assert "t.message_id" in queries[-1] and "t.item_id" in queries[-1]
    stored = dict(Delivery.objects.filter(integration=segment).values_list("message_id", "item_id"))
    assert stored == {
        "s-0": "s-0",
        "s-1": "s-1",
        "s-2": "s-2",
        "d-0": "d-0",
        "d-1": "other-item",
        "d-2": "d-2",
    }


def test_delivery_ids_are_the_uuids_uuid_itself_makes_of_the_hash():
    """`delivery_id_for` sets the UUID's value as uuid.UUID does, without its argument checks:
    the same value, text, bytes, hash and version 4 as `uuid.UUID(int=...)` for the same hash,
    and usable as a key and a query parameter."""
    import hashlib
    import uuid

    from integrations.delivery_rows import delivery_id_for

    for integration_id, message_id in [(1, "m-1"), (7, "a" * 100), (123456, "é/€"), (2, "")]:
        made = delivery_id_for(integration_id, message_id)
        digest = hashlib.blake2b(f"{integration_id}:{message_id}".encode(), digest_size=16).digest()
        expected = uuid.UUID(bytes=digest, version=4)
        assert (made, str(made), made.bytes, hash(made)) == (
            expected,
            str(expected),
            expected.bytes,
            hash(expected),
        )
        assert (made.version, made.variant, made.is_safe) == (4, uuid.RFC_4122, uuid.SafeUUID.unknown)
        assert {made: 1}[expected] == 1
        assert uuid.UUID(str(made)) == made


@pytest.mark.parametrize("odd", ["", "with\x1ethe separator", "line\nbreak, comma and 'quote'"])
def test_each_column_is_stored_as_given_whether_it_went_as_one_string_or_as_an_array(segment, odd):
    """Text columns go as one string the server splits, unless a value holds the separator (ASCII
    RS): then as an array. An activity's id (a uuid column) is its item id's text, cast."""
    import uuid

    activity_ids = [str(uuid.uuid4()) for _ in range(3)]
    rows = [
        NewDelivery(
            integration_id=segment.pk,
            item_kind=Delivery.ItemKind.ACTIVITY,
            item_id=activity_id,
            action="",
            message_id=activity_id,
            message=f'{{"n": {n}, "odd": "{odd}"}}' if n else odd,
            activity_id=activity_id,
            last_error=f"{odd}{n}",
        )
        for n, activity_id in enumerate(activity_ids)
    ]
    assert _insert(rows) == {segment.pk: 3}
    stored = {
        str(d.activity_id): (d.item_id, d.message_id, d.message, d.last_error, d.pk)
        for d in Delivery.objects.filter(integration=segment)
    }
    assert stored == {r.activity_id: (r.item_id, r.message_id, r.message, r.last_error, r.id) for r in rows}


def test_an_attempts_delivery_ids_are_not_compressed():
    """Random UUIDs do not compress: PostgreSQL would try (about 1.4 ms for a request of 1,100
    deliveries' ids) and store them as they were. They are kept out of line, uncompressed."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's storage")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'integrations_attempt'::regclass "
            "AND attname = 'delivery_ids'"
        )
        assert cursor.fetchone()[0] == "e"


def test_an_activitys_delivery_made_by_position_equals_the_one_made_by_keywords():
    """`activity_delivery` passes `NewDelivery`'s fields by position: a field added or moved in the
    dataclass must not shift the values into the wrong ones."""
    from integrations.delivery_rows import NewDelivery, activity_delivery

    raw = b'{"type":"track"}'
    made = activity_delivery(7, "0b6c7c2e-5f1e-4c8e-9f65-1d3c2f1b9a10", raw)
    assert made == NewDelivery(
        integration_id=7,
        item_kind="activity",
        item_id="0b6c7c2e-5f1e-4c8e-9f65-1d3c2f1b9a10",
        action="",
        message_id="0b6c7c2e-5f1e-4c8e-9f65-1d3c2f1b9a10",
        message=raw.decode(),
        activity_id="0b6c7c2e-5f1e-4c8e-9f65-1d3c2f1b9a10",
        raw=raw,
    )


@pytest.mark.parametrize("session_value", ["", "force_custom_plan"])
@pytest.mark.parametrize("may_exist", [False, True])
def test_a_large_insert_runs_on_a_generic_plan_and_leaves_the_setting_as_it_was(
    segment, monkeypatch, may_exist, session_value
):
    """A custom plan folds the bound text into an array while planning and copies it through the
    planner (a fifth of a large fan-out's server CPU): a large insert runs on a generic plan, keeps
    each row's own message through a conflict, and leaves the setting as it was, a session's own
    value included; a small insert, or one outside a transaction, asks for nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statements")
    from integrations.delivery_store_pg import GENERIC_PLAN_ROWS

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            return cursor.fetchone()[0]

    if session_value:
        with connection.cursor() as cursor:
            cursor.execute(f"SET plan_cache_mode = {session_value}")
    before = setting()
    modes: list[str] = []  # the setting each insert statement ran under
    execute = psycopg.Cursor.execute

    def watch(cursor, query, params=None, **kwargs):
        if "INSERT INTO integrations_delivery" in str(query):
            modes.append(cursor.connection.execute("SHOW plan_cache_mode").fetchone()[0])
        return execute(cursor, query, params, **kwargs)

    n = GENERIC_PLAN_ROWS + 6
    try:
        with transaction.atomic():
            kept = _new(segment.pk, "g-0", status="delivered")
            kept.message = '{"messageId": "g-0", "first": true}'
            kept.raw = b""
            kept.__post_init__()
            assert _insert([kept]) == {segment.pk: 1}
            monkeypatch.setattr(psycopg.Cursor, "execute", watch)
            rows = [_new(segment.pk, f"g-{i}") for i in range(n)]
            assert _insert(rows, may_exist=may_exist) == {segment.pk: n - 1}
            monkeypatch.undo()
            assert modes and set(modes) == {"force_generic_plan"}
            assert setting() == before  # within the transaction, right after
        assert setting() == before  # and after it
        stored = dict(Delivery.objects.filter(integration=segment).values_list("message_id", "message"))
        assert stored == {
            "g-0": '{"messageId": "g-0", "first": true}',
            **{f"g-{i}": f'{{"messageId": "g-{i}"}}' for i in range(1, n)},
        }
        # A small insert, and a large one outside a transaction, plan as the session says.
        for rows, atomic in (
            ([_new(segment.pk, "s-1")], True),
            ([_new(segment.pk, f"o-{i}") for i in range(n)], False),
        ):
            modes.clear()
            monkeypatch.setattr(psycopg.Cursor, "execute", watch)
            if atomic:
                with transaction.atomic():
                    assert _insert(rows) == {segment.pk: len(rows)}
            else:
                assert _insert(rows) == {segment.pk: len(rows)}
            monkeypatch.undo()
            assert modes == [before]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")
