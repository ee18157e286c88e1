"""The usage-event table's bounded growth: monthly partitions made ahead, whole partitions retired by
retention while the rollups keep their figures, and dedupe that stays exact across partitions."""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections

from events.metrics.definitions import definition_validate
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.selectors import metric_report, metric_value
from events.metrics.services import metric_create
from events.models import ForwardBatch, RollupBatch, UsageEvent, UsageEventKey, UsageEventRetention
from events.partitions import (
    month_start,
    partition_of,
    usage_event_keys_prune,
    usage_event_partitions,
    usage_event_partitions_ensure,
    usage_event_partitions_retire,
)
from events.services import usage_events_ingest
from hub.models import App
from tests.factories import AppFactory

JAN = datetime(2030, 1, 10, 12, tzinfo=UTC)


def ingest(app, *event_ids, at, timestamp=None):
    """Ingest events received at `at` (the partition key), stamped `timestamp` (default `at`)."""
    stamp = (timestamp or at).isoformat()
    body = [
        {"eventName": "api_call", "customerId": "shop-1", "eventId": e, "timestamp": stamp} for e in event_ids
    ]
    with time_machine.travel(at, tick=False):
        return usage_events_ingest(app=app, raw_events=body)


def partition_holding(event_id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM events_usageevent WHERE event_id = %s", [event_id]
        )
        return [row[0] for row in cursor.fetchall()]


def names():
    return [p.name for p in usage_event_partitions()]


def retire(now):
    """Retire as of `now`, naming only the partitions of 2030 (the empty ones of today's months,
    made by the migration, are retired too when `now` is years ahead). The test's events are not
    committed: their deferred foreign-key checks run first, as a commit would run them."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return [name for name in usage_event_partitions_retire(now=now) if "_p2030_" in name]


def count_metric(app):
    metric = metric_create(app=app, definition=definition_validate(name="calls", event_name="api_call"))
    metrics_rebuild(app_pk=app.pk)
    metric.refresh_from_db()
    return metric


@pytest.mark.django_db
def test_partitions_are_made_ahead_once_and_events_land_in_their_month(app):
    made = usage_event_partitions_ensure(now=JAN, ahead=2)

    assert made == ["events_usageevent_p2030_01", "events_usageevent_p2030_02", "events_usageevent_p2030_03"]
    assert usage_event_partitions_ensure(now=JAN, ahead=2) == []  # idempotent
    assert set(made) <= set(names())
    ingest(app, "feb", at=datetime(2030, 2, 28, 23, 59, tzinfo=UTC))
    assert partition_holding("feb") == ["events_usageevent_p2030_02"]


@pytest.mark.django_db
def test_the_migration_made_this_month_and_the_next_three():
    this_month = month_start(datetime.now(UTC))
    expected = [this_month]
    for _ in range(3):
        expected.append(partition_of(expected[-1]).end)
    assert {partition_of(m).name for m in expected} <= set(names())
    # Months before the migration's are the partition of the events stored before it.
    assert usage_event_partitions_ensure(now=datetime(2025, 1, 1, tzinfo=UTC), ahead=2) == []


@pytest.mark.django_db
def test_an_event_of_a_month_without_partition_goes_to_the_default_and_moves_into_its_partition(app):
    late = datetime(2031, 6, 3, tzinfo=UTC)
    ingest(app, "lost", at=late)
    event = UsageEvent.objects.get(event_id="lost")
    assert partition_holding("lost") == ["events_usageevent_default"]

    made = usage_event_partitions_ensure(now=datetime(2031, 5, 20, tzinfo=UTC), ahead=0)

    # The scheduler makes the month of what waits in the default partition too, and moves it in.
    assert made == ["events_usageevent_p2031_05", "events_usageevent_p2031_06"]
    assert partition_holding("lost") == ["events_usageevent_p2031_06"]
    assert UsageEvent.objects.get(event_id="lost").pk == event.pk
    assert ingest(app, "lost", at=late + timedelta(days=1)).duplicates == 1


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_make_each_partition_once():
    now = datetime(2033, 3, 1, tzinfo=UTC)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def scheduler():
        try:
            barrier.wait()
            results.append(usage_event_partitions_ensure(now=now, ahead=3))
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        made = sorted(results[0] + results[1])
        assert made == [f"events_usageevent_p2033_{m:02}" for m in range(3, 7)]
        assert [n for n in names() if n.startswith("events_usageevent_p2033")] == made
    finally:
        with connection.cursor() as cursor:
            for name in names():
                if name.startswith("events_usageevent_p2033"):
                    cursor.execute(f"DROP TABLE {name}")


@pytest.mark.django_db
def test_retention_drops_the_whole_partition_and_the_rollups_keep_their_figures(app):
    usage_event_partitions_ensure(now=JAN, ahead=1)
    metric = count_metric(app)
    ingest(app, "a", "b", "c", at=JAN)
    ingest(app, "d", at=JAN + timedelta(days=35))  # February: its own partition
    rollups_drain(app_pks=[app.pk])
    end = datetime(2030, 3, 1, tzinfo=UTC)
    before = metric_value(metric=metric, customer=None, start=None, end=end)
    report = metric_report(
        metric=metric, period="daily", start=date(2030, 1, 1), end=date(2030, 3, 1)
    ).as_json()
    UsageEventRetention.objects.create(app=app, days=30)

    # January's partition may go 30 days after its end (February 1st), not before.
    assert retire(now=datetime(2030, 3, 2, 23, tzinfo=UTC)) == []
    retired = retire(now=datetime(2030, 3, 3, 1, tzinfo=UTC))

    assert retired == ["events_usageevent_p2030_01"]
    assert "events_usageevent_p2030_01" not in names()
    assert sorted(UsageEvent.objects.filter(app=app).values_list("event_id", flat=True)) == ["d"]
    assert before == 4
    assert metric_value(metric=metric, customer=None, start=None, end=end) == 4
    after = metric_report(
        metric=metric, period="daily", start=date(2030, 1, 1), end=date(2030, 3, 1)
    ).as_json()
    assert after == report


@pytest.mark.django_db
def test_a_partition_shared_with_an_app_keeping_events_forever_stays(app):
    usage_event_partitions_ensure(now=JAN, ahead=0)
    other = AppFactory(workspace=app.workspace)
    ingest(app, "mine", at=JAN)
    ingest(other, "theirs", at=JAN)
    rollups_drain(app_pks=[app.pk, other.pk])
    UsageEventRetention.objects.create(app=app, days=1)

    assert retire(now=datetime(2031, 1, 1, tzinfo=UTC)) == []
    UsageEventRetention.objects.create(app=other, days=90)
    assert retire(now=datetime(2030, 4, 30, tzinfo=UTC)) == []  # Feb 1 + 90 d
    assert retire(now=datetime(2030, 5, 2, tzinfo=UTC)) == ["events_usageevent_p2030_01"]


@pytest.mark.django_db
def test_a_partition_is_kept_while_its_events_wait_to_be_counted_or_forwarded(app):
    usage_event_partitions_ensure(now=JAN, ahead=0)
    ingest(app, "pending", at=JAN)
    UsageEventRetention.objects.create(app=app, days=1)
    later = datetime(2030, 6, 1, tzinfo=UTC)
    assert RollupBatch.objects.filter(app=app).exists()

    assert retire(now=later) == []
    rollups_drain(app_pks=[app.pk])
    ForwardBatch.objects.create(app=app, event_ids=[1], created_at=JAN)
    assert retire(now=later) == []
    ForwardBatch.objects.all().delete()
    assert retire(now=later) == ["events_usageevent_p2030_01"]
    assert not UsageEvent.objects.filter(app=app).exists()


@pytest.mark.django_db
def test_detach_mode_keeps_the_partition_as_an_archive_table(app, settings):
    settings.HUB_USAGE_EVENT_RETENTION_MODE = "detach"
    usage_event_partitions_ensure(now=JAN, ahead=0)
    ingest(app, "kept", at=JAN)
    rollups_drain(app_pks=[app.pk])
    UsageEventRetention.objects.create(app=app, days=1)

    assert retire(now=datetime(2030, 3, 1, tzinfo=UTC)) == ["events_usageevent_p2030_01"]

    assert not UsageEvent.objects.filter(event_id="kept").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM events_usageevent_archive_p2030_01")
        assert cursor.fetchall() == [("kept",)]


@pytest.mark.django_db
def test_the_same_event_id_in_two_partitions_is_stored_once(app):
    usage_event_partitions_ensure(now=JAN, ahead=1)
    first = ingest(app, "same", at=datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC))
    again = ingest(
        app, "same", at=datetime(2030, 2, 1, 0, 0, 1, tzinfo=UTC), timestamp=datetime(2030, 2, 1, tzinfo=UTC)
    )

    assert (first.accepted, first.duplicates) == (1, 0)
    assert (again.accepted, again.duplicates) == (0, 1)
    assert partition_holding("same") == ["events_usageevent_p2030_01"]
    assert RollupBatch.objects.filter(app=app).count() == 1


@pytest.mark.django_db
def test_repeated_ids_in_one_insert_store_the_first(app):
    from events.event_store import usage_event_store

    ingest(app, "seed", at=JAN)
    customer = UsageEvent.objects.get(event_id="seed").customer_id
    rows = [
        (app.pk, customer, "x", "first", JAN, "{}", JAN),
        (app.pk, customer, "x", "second", JAN, "{}", JAN),
        (app.pk, customer, "y", "third", JAN, "{}", JAN),
    ]
    stored, _ = usage_event_store().insert(rows)
    assert sorted(stored) == ["x", "y"]
    assert UsageEvent.objects.get(event_id="x").event_name == "first"


@pytest.mark.django_db
def test_dedupe_keys_are_pruned_after_the_window_and_then_the_id_is_stored_again(app, settings):
    settings.HUB_USAGE_EVENT_DEDUPE_DAYS = 35
    usage_event_partitions_ensure(now=JAN, ahead=3)
    ingest(app, "old", at=JAN)
    ingest(app, "recent", at=JAN + timedelta(days=30))

    assert usage_event_keys_prune(now=JAN + timedelta(days=36)) == 1

    assert list(UsageEventKey.objects.values_list("event_id", flat=True)) == ["recent"]
    assert ingest(app, "recent", at=JAN + timedelta(days=37)).duplicates == 1
    assert ingest(app, "old", at=JAN + timedelta(days=37)).accepted == 1  # past the window
    settings.HUB_USAGE_EVENT_DEDUPE_DAYS = 0
    assert usage_event_keys_prune(now=JAN + timedelta(days=400)) == 0


@pytest.mark.django_db
def test_deleting_an_app_deletes_its_keys_and_retention():
    app = AppFactory()
    ingest(app, "k", at=datetime.now(UTC))
    UsageEventRetention.objects.create(app=app, days=10)
    App.objects.filter(pk=app.pk).delete()
    assert not UsageEventKey.objects.exists()
    assert not UsageEventRetention.objects.exists()


@pytest.mark.django_db
def test_an_event_stored_without_an_id_gets_the_month_of_its_transaction():
    from tests.factories import UsageEventFactory

    event = UsageEventFactory()  # the ORM (or COPY) leaves the id to the column's default

    assert partition_holding(event.event_id) == [partition_of(month_start(datetime.now(UTC))).name]


@pytest.mark.django_db
def test_reading_a_batch_of_events_by_id_reads_one_partition(app):
    usage_event_partitions_ensure(now=JAN, ahead=2)
    for day in (0, 31, 59):
        ingest(app, *[f"{day}-{n}" for n in range(5)], at=JAN + timedelta(days=day))
    ids = RollupBatch.objects.filter(app=app).order_by("id").values_list("event_ids", flat=True)[1]

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT id, properties FROM events_usageevent WHERE id = ANY(%s::bigint[])", [ids]
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "events_usageevent_p2030_02" in plan
    assert "events_usageevent_p2030_01" not in plan and "events_usageevent_p2030_03" not in plan
    assert "default" not in plan
