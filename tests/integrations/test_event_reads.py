"""A backfill's chunk, and the forwarder's, read about a chunk's events (and their customers),
not every event of a partition or every event left after a cursor, even where the statistics know
nothing of the events (partitions filled since their last analyze)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from events.models import UsageEvent
from events.services import usage_events_ingest
from integrations import backfill as backfills
from integrations.destinations import destination_save
from integrations.forwarding import events_load
from tests.integrations.conftest import make_customer
from tests.query_plans import rows_read, statements_with_params

pytestmark = pytest.mark.django_db


def _events_with_lagging_statistics(app, day, count=600):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_usageevent, hub_customer")  # empty, as their statistics say
    customers = [make_customer(app, f"shop-{n}") for n in range(3)]
    raw = [
        {"eventName": "api_call", "eventId": f"e-{i}", "customerId": customers[i % 3].platform_id,
         "timestamp": (day + timedelta(seconds=i)).isoformat()}
        for i in range(count)
    ]  # fmt: skip
    for start in range(0, count, 500):
        usage_events_ingest(app=app, raw_events=raw[start : start + 500])


def test_a_chunk_reads_its_own_events_while_the_statistics_lag(workspace, app, fast_retries):
    fast_retries.HUB_BACKFILL_CHUNK = 50
    day = timezone.now() - timedelta(days=1)
    _events_with_lagging_statistics(app, day)
    metronome = destination_save(
        workspace=workspace, kind="metronome", name="M", secret="mt_1", url="http://127.0.0.1:9/", apps=[app]
    )
    started = backfills.backfill_start(
        integration=metronome, since=day - timedelta(hours=1), until=timezone.now(), enqueue=False
    )
    backfills.backfill_step(backfill_id=started.pk)  # the first chunk: the cursor moves past it
    started.refresh_from_db()
    with statements_with_params() as sent:
        rows = backfills._chunk(started)
    assert [r["event_id"] for r in rows] == [f"e-{i}" for i in range(50, 100)]
    assert {r["customer__platform_id"] for r in rows} == {"shop-0", "shop-1", "shop-2"}
    reads = []
    with connection.cursor() as cursor:  # replayed in order: the settings around the read hold for it
        for query, params in sent:
            if query.lstrip().upper().startswith("SET") or "set_config(" in query:
                cursor.execute(query, params)
            elif "events_usageevent" in query:
                reads.append(rows_read(query, params, "events_usageevent"))
    assert reads, sent
    for read in reads:
        assert sum(read) <= 60, read  # the chunk (50), not the 550 events left


def test_the_forwarders_read_takes_its_events_by_primary_key_while_the_statistics_lag(app):
    # Pages enough that reading the partition for each id costs more than its index even by the
    # planner's reckoning (in a partition of a few pages it reads the partition for each id, which
    # at that size is as cheap as anything).
    _events_with_lagging_statistics(app, timezone.now() - timedelta(days=1), count=3000)
    chunk = list(UsageEvent.objects.filter(app=app).order_by("id").values_list("id", flat=True)[100:150])
    with statements_with_params() as sent:
        rows = events_load(chunk)
    assert [r["id"] for r in rows] == chunk
    assert {r["customer__platform_id"] for r in rows} == {"shop-0", "shop-1", "shop-2"}
    (query, params), *_ = [(q, p) for q, p in sent if "events_usageevent" in q]
    assert sum(rows_read(query, params, "events_usageevent")) <= 50
    assert sum(rows_read(query, params, "hub_customer")) <= 50
