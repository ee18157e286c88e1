"""Several drains of one app count at once, each a shard of its customers: every event is counted
exactly once, a drain never waits for another's shard, and a usage limit crossed by two drains
that commit together is still signalled."""

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection, transaction

from events.metrics import rollup_store
from events.metrics.definitions import definition_validate
from events.metrics.limits import LIMITS_LOCK, plan_usage_limit_set
from events.metrics.rollups import metrics_rebuild, rollups_drain, rollups_drain_app
from events.metrics.services import metric_create, metric_delete
from events.models import (
    ROLLUP_SHARDS,
    Metric,
    MetricRollup,
    MetricUniqueValue,
    RollupBatch,
    UsageEvent,
    UsageSignal,
)
from events.services import usage_events_ingest
from hub.models import Customer, Subscription
from hub.services.customers import customer_identify
from hub.services.lifecycle import subscription_subscribe
from hub.services.plans import plan_upsert
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.now(UTC).replace(microsecond=0)
DEFINITIONS = [
    {"name": "calls", "event_name": "api_call"},
    {"name": "units", "event_name": "api_call", "aggregation": "sum", "property": "units"},
    {"name": "users", "event_name": "api_call", "aggregation": "unique_count", "property": "user"},
    {"name": "by plan", "event_name": "api_call", "group_by": "plan"},
    {"name": "last", "event_name": "api_call", "aggregation": "latest", "property": "units"},
]


def _app_with_metrics(definitions=DEFINITIONS):
    app = AppFactory()
    metrics = [metric_create(app=app, definition=definition_validate(**d)) for d in definitions]
    metrics_rebuild(app_pk=app.pk)
    return app, metrics


def _ingest(app, batches: int, per_batch: int, seed: int = 1, days: range = range(40),
            customers: list[str] | None = None) -> int:  # fmt: skip
    """`batches` stored batches of random events on these days before now (of these customers)."""
    rng = random.Random(seed)
    customers = customers or [f"shop-{k}" for k in range(5)]
    for b in range(batches):
        usage_events_ingest(app=app, raw_events=[
            {"eventName": rng.choice(["api_call", "api_call", "export"]), "eventId": f"{seed}-{b}-{i}",
             "customerId": rng.choice(customers),
             "timestamp": (NOW - timedelta(days=rng.choice(days), hours=rng.randrange(24))).isoformat(),
             "properties": {"units": rng.randrange(-3, 20), "user": f"u{rng.randrange(12)}",
                            "plan": rng.choice(["free", "pro"])}}
            for i in range(per_batch)
        ])  # fmt: skip
    return batches * per_batch


def _rows(metrics):
    rollups = sorted(
        MetricRollup.objects.filter(metric__in=metrics).values_list(
            "metric_id", "customer_id", "group_key", "granularity", "bucket", "count", "value_count", "sum",
            "min", "max", "latest_value", "latest_at", "latest_event_id",
        ),
        key=repr,
    )  # fmt: skip
    uniques = sorted(
        MetricUniqueValue.objects.filter(metric__in=metrics).values_list(
            "metric_id", "customer_id", "group_key", "granularity", "bucket", "value_hash"
        ),
        key=repr,
    )
    return rollups, uniques


def _rebuilt_rows(metrics):
    """The rows the metrics have when built from every stored event at once (nothing pending)."""
    Metric.objects.filter(pk__in=[m.pk for m in metrics]).update(status=Metric.Status.BUILDING)
    assert sorted(metrics_rebuild(app_pk=metrics[0].app_id)) == sorted(m.pk for m in metrics)
    return _rows(metrics)


def _in_thread(target):
    """Run `target` in a thread with a database connection of its own; return a joiner."""
    out: dict = {}

    def run():
        try:
            out["result"] = target()
        except BaseException as exc:  # reported by the joiner
            out["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()

    def join(timeout: float = 60):
        thread.join(timeout)
        assert not thread.is_alive(), "the thread did not finish"
        if "error" in out:
            raise out["error"]
        return out.get("result")

    return join


def _advisory_waits(lock_class: int, app_pk: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s",
            [lock_class, app_pk],
        )
        return cursor.fetchone()[0]


def test_a_stored_batch_is_one_rollup_batch_per_shard_of_its_customers():
    app = AppFactory()
    _ingest(app, batches=1, per_batch=40)
    batches = list(RollupBatch.objects.filter(app=app).values_list("shard", "event_ids"))
    customers = dict(UsageEvent.objects.filter(app=app).values_list("pk", "customer_id"))

    assert sorted(shard for shard, _ in batches) == sorted({pk % ROLLUP_SHARDS for pk in customers.values()})
    assert len(batches) > 1
    for shard, ids in batches:
        assert {customers[pk] % ROLLUP_SHARDS for pk in ids} == {shard}
    assert sorted(pk for _, ids in batches for pk in ids) == sorted(customers)


def test_a_drain_takes_a_shard_another_drain_does_not_hold_without_waiting():
    """Drain A holds the oldest batches' shard in an open transaction; drain B counts the batches of
    every other shard at once, and leaves A's shard alone (the rest of it waits for A).

    A's events fall on other days than B's, so that no app-wide row is theirs both (a drain does
    wait for a row another drain merged into, until that one commits).
    """
    app, metrics = _app_with_metrics([d for d in DEFINITIONS if d.get("aggregation") != "unique_count"])
    events = _ingest(app, batches=2, per_batch=7, days=range(60, 70), customers=["shop-0"])
    held = Customer.objects.get(app=app, platform_id="shop-0").pk % ROLLUP_SHARDS
    events += _ingest(app, batches=10, per_batch=7, seed=3, days=range(30),
                      customers=[f"shop-{k}" for k in range(1, 12)])  # fmt: skip
    others = [c.pk for c in Customer.objects.filter(app=app) if c.pk % ROLLUP_SHARDS != held]
    a_holds = threading.Event()
    b_done = threading.Event()

    def drain_a():
        with transaction.atomic():
            result = rollups_drain_app(app_pk=app.pk, max_batches=2)
            a_holds.set()
            assert b_done.wait(30)
        return result

    join_a = _in_thread(drain_a)
    assert a_holds.wait(30)
    b_events = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '5s'")  # B must not wait for A: a wait fails
        while (result := rollups_drain_app(app_pk=app.pk, max_batches=100)).batches:
            b_events += result.events
    pending = set(RollupBatch.objects.filter(app=app).values_list("shard", flat=True))
    b_done.set()
    a = join_a()

    assert a.batches == 2
    assert pending == {held}  # B took every other shard, none of A's
    assert b_events == UsageEvent.objects.filter(app=app, customer_id__in=others).count() > 0
    assert a.events + b_events + rollups_drain(app_pks=[app.pk]) == events
    assert not RollupBatch.objects.filter(app=app).exists()
    counted = _rows(metrics)
    assert counted == _rebuilt_rows(metrics)


def test_drains_running_at_once_count_every_event_exactly_once():
    app, metrics = _app_with_metrics()
    events = _ingest(app, batches=60, per_batch=9, seed=2)
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait(30)
        counted = 0
        while True:
            result = rollups_drain_app(app_pk=app.pk, max_batches=3)
            counted += result.events
            if result.batches == 0:
                return counted

    joins = [_in_thread(worker) for _ in range(4)]
    counts = [join() for join in joins]
    assert sum(counts) == events
    assert sum(1 for c in counts if c) >= 2, counts  # they did count side by side
    assert not RollupBatch.objects.filter(app=app).exists()
    assert _rows(metrics) == _rebuilt_rows(metrics)


def test_a_limit_crossed_by_two_drains_committing_together_is_signalled(monkeypatch):
    """90 counted; drain A adds 5 and keeps its transaction open; drain B adds 5: B's check waits
    for A's commit and reads 100.

    Drains take different shards of the customers, so two drains count one customer at once only
    when its batches are in two shards (processes with another ROLLUP_SHARDS, during a deploy):
    B here takes A's shard regardless of A's lock."""
    app = AppFactory()
    customer_identify(app=app, platform_id="shop-1")
    customer = Customer.objects.get(app=app, platform_id="shop-1")
    basic, _ = plan_upsert(app=app, name="Basic", amount=10)
    metric = metric_create(app=app, definition=definition_validate(name="API calls", event_name="api_call"))
    metrics_rebuild(app_pk=app.pk)
    plan_usage_limit_set(plan=basic, metric=metric, limit=100, thresholds=[100])
    subscription_subscribe(customer=customer, plan=basic)
    # The billing period began ten days ago: today and two days ago are in it.
    Subscription.objects.filter(customer=customer).update(activated_at=NOW - timedelta(days=10))

    def calls(n, start, at):
        return [{"eventName": "api_call", "eventId": f"c{i}", "customerId": "shop-1", "timestamp": at.isoformat()}
                for i in range(start, start + n)]  # fmt: skip

    usage_events_ingest(app=app, raw_events=calls(90, 0, NOW))
    rollups_drain(app_pks=[app.pk])
    usage_events_ingest(app=app, raw_events=calls(5, 90, NOW))  # batch of A
    # B's events on another day: no rollup row is both drains' (B could wait for A's rows instead).
    usage_events_ingest(app=app, raw_events=calls(5, 95, NOW - timedelta(days=2)))  # batch of B
    a_checked = threading.Event()
    release_a = threading.Event()

    def drain_a():
        with transaction.atomic():
            rollups_drain_app(app_pk=app.pk, max_batches=1)
            a_checked.set()
            assert release_a.wait(30)

    join_a = _in_thread(drain_a)
    assert a_checked.wait(30)
    assert not UsageSignal.objects.filter(customer=customer).exists()  # A saw 95
    monkeypatch.setattr(rollup_store, "_shard_take", lambda cursor, app_pk: customer.pk % ROLLUP_SHARDS)
    join_b = _in_thread(lambda: rollups_drain_app(app_pk=app.pk, max_batches=1))
    deadline = time.monotonic() + 30
    while not _advisory_waits(LIMITS_LOCK, app.pk):  # B counted its batch; its check waits for A
        assert time.monotonic() < deadline, "drain B never waited for A's check"
        time.sleep(0.02)
    release_a.set()
    join_a()
    assert join_b().batches == 1
    signal = UsageSignal.objects.get(customer=customer, metric=metric)
    assert (signal.threshold, signal.value) == (100, 100)


def test_deleting_a_metric_waits_for_the_drains_and_leaves_no_row_behind():
    """The rollup tables check no foreign key: the delete excludes drains by the usage lock."""
    app, metrics = _app_with_metrics()
    _ingest(app, batches=2, per_batch=5, seed=5)
    draining = threading.Event()
    release = threading.Event()

    def drain():
        with transaction.atomic():
            rollups_drain_app(app_pk=app.pk, max_batches=1)
            draining.set()
            assert release.wait(30)

    join = _in_thread(drain)
    assert draining.wait(30)
    with pytest.raises(OperationalError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '300ms'")
        metric_delete(metric=metrics[2])  # waits for the drain's transaction: times out here
    release.set()
    join()
    rollups_drain(app_pks=[app.pk])
    metric_delete(metric=metrics[2])
    assert not MetricRollup.objects.filter(metric_id=metrics[2].pk).exists()
    assert not MetricUniqueValue.objects.filter(metric_id=metrics[2].pk).exists()
    assert MetricRollup.objects.filter(metric_id=metrics[0].pk).exists()


def test_percent_signs_in_definitions_are_literals_of_the_drain_statement():
    """The drain statement takes parameters and inlines the definitions' quoted literals: a `%`
    in an event name or a filter value is text, not a placeholder."""
    app = AppFactory()
    metric = metric_create(app=app, definition=definition_validate(
        name="discounts", event_name="100% off", aggregation="sum", property="n",
        filters=[{"property": "code", "op": "in", "value": ['%s', '%"é', "50%"]}]))  # fmt: skip
    metrics_rebuild(app_pk=app.pk)
    usage_events_ingest(app=app, raw_events=[
        {"eventName": "100% off", "eventId": str(i), "customerId": "shop", "properties": {"code": code, "n": i}}
        for i, code in enumerate(['%s', '%"é', "50%", "%%", "other"], start=1)
    ])  # fmt: skip
    rollups_drain(app_pks=[app.pk])
    total = MetricRollup.objects.get(metric=metric, customer__isnull=True, granularity="d")
    assert (total.count, total.sum) == (3, 6)
