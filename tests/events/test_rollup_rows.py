"""The rollup tables' rows go with their metric, customer and workspace, found by the two unique
indexes (the tables have no index of metric_id or customer_id alone; events migration 0013)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from events.metrics.definitions import definition_validate
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.services import metric_create, metric_delete
from events.models import MetricRollup, MetricUniqueValue
from events.services import usage_events_ingest
from hub.models import Customer
from hub.services.members import workspace_delete
from tests.factories import AppFactory
from tests.query_plans import rows_read, statements_with_params

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
TABLES = (MetricRollup, MetricUniqueValue)


def _metrics(app):
    made = [
        metric_create(app=app, definition=definition_validate(name=name, event_name="api_call", **kw))
        for name, kw in (("Calls", {}), ("Users", {"aggregation": "unique_count", "property": "user"}))
    ]
    metrics_rebuild(app_pk=app.pk)
    return made


def _ingest(app, customers=("shop-1", "shop-2"), users=3):
    usage_events_ingest(app=app, raw_events=[
        {"eventName": "api_call", "customerId": c, "timestamp": (NOW - timedelta(days=d)).isoformat(),
         "properties": {"user": f"u{u}"}}
        for c in customers for d in range(3) for u in range(users)
    ])  # fmt: skip
    rollups_drain(app_pks=[app.pk])


def _rows(**filters) -> dict[str, int]:
    return {model.__name__: model.objects.filter(**filters).count() for model in TABLES}


@pytest.fixture
def two_apps(app, user):
    other = AppFactory()
    for a in (app, other):
        _metrics(a)
        _ingest(a)
    return app, other


def test_deleting_a_metric_deletes_its_rows_app_wide_and_per_customer(two_apps):
    app, other = two_apps
    calls, users = app.metrics.order_by("pk")
    assert _rows(metric=users, customer__isnull=True)["MetricUniqueValue"] > 0
    assert _rows(metric=users, customer__isnull=False)["MetricUniqueValue"] > 0
    kept = {m.pk: _rows(metric=m) for m in [calls, *other.metrics.all()]}

    users_pk = users.pk
    metric_delete(metric=users)

    assert _rows(metric_id=users_pk) == {"MetricRollup": 0, "MetricUniqueValue": 0}
    assert {pk: _rows(metric_id=pk) for pk in kept} == kept


def test_deleting_a_customer_deletes_its_rows_read_by_its_index(two_apps):
    app, _ = two_apps
    shop = Customer.objects.get(app=app, platform_id="shop-1")
    mine = _rows(customer=shop)
    assert mine["MetricRollup"] > 0 and mine["MetricUniqueValue"] > 0
    kept = _rows(customer__isnull=False)
    with connection.cursor() as cursor:
        # Reading the table whole is then the last resort: an index must serve the statement.
        cursor.execute("SET LOCAL enable_seqscan = off")
    for model in TABLES:
        table = model._meta.db_table
        read = rows_read(f"SELECT * FROM {table} WHERE customer_id IN (%s)", [shop.pk], table)
        assert sum(read) == mine[model.__name__], (table, read)

    shop_pk = shop.pk
    shop.delete()

    assert _rows(customer_id=shop_pk) == {"MetricRollup": 0, "MetricUniqueValue": 0}
    assert _rows(customer__isnull=False) == {k: v - mine[k] for k, v in kept.items()}


def test_deleting_a_workspace_leaves_no_rows_of_its_metrics(two_apps, user):
    app, other = two_apps
    metric_pks = list(app.metrics.values_list("pk", flat=True))
    others = _rows(metric__app=other)

    with statements_with_params() as sent:
        workspace_delete(workspace=app.workspace, by=user, confirm=app.workspace.name)

    assert _rows(metric_id__in=metric_pks) == {"MetricRollup": 0, "MetricUniqueValue": 0}
    # Its customers' rows went with its customers (by their index), not by reading the tables
    # once for each of its metrics.
    deletes = [q for q, _ in sent if q.startswith("DELETE") and "metric" in q.split(" WHERE")[0]]
    assert deletes and not [q for q in deletes if "IS NOT NULL" in q], deletes
    assert _rows(metric_id__in=list(other.metrics.values_list("pk", flat=True))) == others


def test_a_rebuilt_metric_has_its_rows_once(two_apps):
    app, _ = two_apps
    users = app.metrics.get(name="Users")
    before = {m.pk: _rows(metric=m) for m in app.metrics.all()}
    type(users).objects.filter(pk=users.pk).update(status="building")

    assert metrics_rebuild(app_pk=app.pk) == [users.pk]

    assert {m.pk: _rows(metric=m) for m in app.metrics.all()} == before


def test_the_tables_have_only_their_unique_indexes_by_metric_or_customer():
    with connection.cursor() as cursor:
        for model in TABLES:
            table = model._meta.db_table
            cursor.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", [table]
            )
            defs = sorted(d for (d,) in cursor.fetchall())
            alone = [d for d in defs if d.endswith("(metric_id)") or d.endswith("(customer_id)")]
            assert not alone, defs
            by_customer = [d for d in defs if "customer_unique" in d]
            assert len(by_customer) == 1 and "btree (customer_id, metric_id," in by_customer[0], defs
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'events_metricrollup'")
        assert cursor.fetchone()[0] == ["fillfactor=80"]
