"""The usage-event store's one-event statement (sent through libpq outside a transaction) writes
what the many-event statement writes: the dedupe key, the event, its rollup batch and, for an app
that forwards usage events, its forward batch; a repeated id writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from events.event_store import PostgresUsageEventStore
from events.models import ROLLUP_SHARDS, ForwardBatch, RollupBatch, UsageEvent, UsageEventKey
from hub.raw_cursor import DirectStatement
from tests.factories import AppFactory, CustomerFactory
from tests.query_plans import statements_with_params

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)


def row(app, customer, event_id: str, name: str = "api_call"):
    return (app.pk, customer.pk, event_id, name, AT, '{"rows": 3, "plan": "pro"}', datetime.now(UTC))


def written(app, event_id: str) -> dict:
    """What the store left for one event: the event, its key, its rollup and forward batches."""
    event = UsageEvent.objects.get(app=app, event_id=event_id)
    key = UsageEventKey.objects.get(app=app, event_id=event_id)
    return {
        "event": (event.customer_id, event.event_name, event.timestamp, event.properties),
        "key received at the event's": key.received_at == event.received_at,
        "rollup batches": [(b.shard, b.event_ids) for b in RollupBatch.objects.filter(app=app)
                           if event.pk in b.event_ids],
        "forward batches": [b.event_ids for b in ForwardBatch.objects.filter(app=app) if event.pk in b.event_ids],
    }  # fmt: skip


def one_event_statement() -> str:
    from events.event_store import _INSERT_ONE

    return _INSERT_ONE.sql


@pytest.mark.parametrize("forward", [False, True])
def test_one_event_writes_what_the_many_event_statement_writes(forward):
    app = AppFactory(forward_usage_events=forward)
    customer = CustomerFactory(app=app)
    store = PostgresUsageEventStore()
    connection.ensure_connection()
    with statements_with_params() as sent:
        assert store.insert([row(app, customer, "one")]) == (["one"], forward)
    assert [sql for sql, _ in sent] == [one_event_statement()]  # through libpq (the recorder's direct path)
    assert store.insert([row(app, customer, "two"), row(app, customer, "three")]) == (
        ["two", "three"],
        forward,
    )

    one, two = written(app, "one"), written(app, "two")
    pks = {e: UsageEvent.objects.get(event_id=e).pk for e in ("one", "two", "three")}
    shard = customer.pk % ROLLUP_SHARDS
    assert one["event"] == two["event"] == (customer.pk, "api_call", AT, {"rows": 3, "plan": "pro"})
    assert one["key received at the event's"] and two["key received at the event's"]
    assert one["rollup batches"] == [(shard, [pks["one"]])]
    assert two["rollup batches"] == [(shard, sorted([pks["two"], pks["three"]]))]
    assert one["forward batches"] == ([[pks["one"]]] if forward else [])
    assert len(two["forward batches"]) == (1 if forward else 0)


def test_a_repeated_event_id_writes_nothing_more():
    app = AppFactory(forward_usage_events=True)
    customer = CustomerFactory(app=app)
    store = PostgresUsageEventStore()
    assert store.insert([row(app, customer, "same")]) == (["same"], True)
    counts = (UsageEvent.objects.count(), RollupBatch.objects.count(), ForwardBatch.objects.count())
    assert store.insert([row(app, customer, "same", name="other")]) == ([], False)
    assert (UsageEvent.objects.count(), RollupBatch.objects.count(), ForwardBatch.objects.count()) == counts
    assert UsageEvent.objects.get(event_id="same").event_name == "api_call"


def test_one_event_in_a_transaction_goes_through_the_cursor_and_rolls_back(monkeypatch):
    app = AppFactory()
    customer = CustomerFactory(app=app)

    def direct(*args):
        raise AssertionError("the direct path ran inside a transaction")

    monkeypatch.setattr(DirectStatement, "_run", direct)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert PostgresUsageEventStore().insert([row(app, customer, "rolled back")]) == (
            ["rolled back"],
            False,
        )
        raise RuntimeError("roll back")
    assert (
        not UsageEvent.objects.filter(app=app).exists() and not UsageEventKey.objects.filter(app=app).exists()
    )
    assert not RollupBatch.objects.filter(app=app).exists()
