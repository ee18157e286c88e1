"""The delivery engine's contract, in process: exact stored messages, one attempt row per request,
the circuit with its probes, retention, and what the delivery log shows."""

from datetime import timedelta

import orjson
import pytest
from django.db import connection, transaction
from django.utils import timezone

from hub.models import Activity, ActivityOutbox
from hub.services import lifecycle
from hub.services.customers import customer_identify
from integrations import delivery, delivery_fanout, delivery_retention
from integrations.delivery_store import store
from integrations.models import Attempt, Delivery, Integration
from integrations.services import delivery_retry, integration_save
from tests.factories import AttemptFactory
from tests.integrations.conftest import make_customer

pytestmark = pytest.mark.django_db


def test_a_resend_is_byte_identical_after_the_customer_and_the_settings_changed(
    workspace, app, standin, fast_retries
):
    """The message is fixed at fan-out: a retry after the custom field and the integration's
    custom-field setting changed sends the same bytes under the same messageId."""
    integration = integration_save(
        workspace=workspace, name="Prod", write_key="wk_live_123", region="custom", custom_host=standin.url,
        apps=[app], activities=["installed"], user_id_field="crm_id",
    )  # fmt: skip
    standin.fail_next(1, 500)
    customer = make_customer(app, "shop-1", custom_fields={"crm_id": "CRM-1"})
    delivery_fanout.activities_fanout()  # sent at once: answered 500
    row = Delivery.objects.get(integration=integration)
    assert row.status == "pending" and row.attempts == 1
    stored = row.message.encode()
    customer_identify(app=app, platform_id="shop-1", custom_fields={"crm_id": "CRM-2"})
    integration_save(
        workspace=workspace, integration=integration, name="Prod", region="custom", custom_host=standin.url,
        apps=[app], activities=["installed"], user_id_field="other_field",
    )  # fmt: skip
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    Integration.objects.filter(pk=integration.pk).update(probe_at=timezone.now())
    report = delivery.deliveries_send(integration_id=integration.pk)
    assert report.delivered == 1
    assert standin.raw_messages() == [stored]
    assert orjson.loads(stored)["userId"] == "CRM-1"
    # A manual Retry sends the same bytes again.
    Delivery.objects.filter(pk=row.pk).update(status="failed")
    delivery_retry(delivery=Delivery.objects.get(pk=row.pk))
    delivery.deliveries_send(integration_id=integration.pk)
    assert standin.raw_messages() == [stored, stored]
    assert standin.message_ids()[str(customer.activities.get().pk)] == 2


def test_an_activity_keeps_the_custom_fields_of_its_moment(workspace, app, standin, fast_retries):
    integration = integration_save(
        workspace=workspace, name="Prod", write_key="wk_live_123", region="custom", custom_host=standin.url,
        apps=[app], activities=["reviewed"], user_id_field="crm_id",
    )  # fmt: skip
    customer = make_customer(app, "shop-1", custom_fields={"crm_id": "before"})
    lifecycle.review_create(customer=customer, rating=5, text="")
    customer_identify(app=app, platform_id="shop-1", custom_fields={"crm_id": "after"})
    delivery_fanout.activities_fanout()  # the fan-out runs after the change
    assert [m["userId"] for m in standin.messages] == ["before"]
    assert Delivery.objects.get(integration=integration).status == "delivered"


def test_an_activity_recorded_before_snapshots_takes_the_customers_fields_and_its_own_otherwise(
    workspace, app, standin
):
    """An activity without a snapshot of the customer's fields (recorded before snapshots existed)
    is rendered with the customer's fields as they are; one with a snapshot, with its own."""
    integration_save(
        workspace=workspace, name="Prod", write_key="wk_live_123", region="custom", custom_host=standin.url,
        apps=[app], activities=["reviewed"], user_id_field="crm_id",
    )  # fmt: skip
    customer = make_customer(app, "shop-1", custom_fields={"crm_id": "now"})
    ActivityOutbox.objects.all().delete()
    older = Activity.objects.create(app=app, customer=customer, kind="reviewed", customer_fields={})
    newer = Activity.objects.create(
        app=app, customer=customer, kind="reviewed", customer_fields={"crm_id": "then"}
    )
    delivery_fanout.activities_fanout()
    assert {m["messageId"]: m["userId"] for m in standin.messages} == {
        str(older.pk): "now",
        str(newer.pk): "then",
    }


def test_one_attempt_row_per_request_knows_its_deliveries(segment, app, standin):
    customers = [make_customer(app, f"s-{i}") for i in range(30)]
    created = delivery_fanout.activities_fanout()
    assert created == {segment.pk: len(customers)}
    attempt = Attempt.objects.get(integration=segment)
    ids = set(Delivery.objects.filter(integration=segment).values_list("pk", flat=True))
    assert {str(i) for i in ids} == set(attempt.delivery_ids) and attempt.message_count == 30
    assert set(Delivery.objects.values_list("last_attempt_id", flat=True)) == {attempt.pk}
    assert attempt.request_headers["Authorization"].startswith("Basic ••••")
    assert "wk_live_123" not in orjson.dumps(attempt.request_headers).decode()


def test_a_fan_out_that_runs_twice_makes_no_second_delivery(segment, app, standin):
    make_customer(app, "s-1")
    activity = Activity.objects.get()
    delivery_fanout.activities_fanout(send=False)
    ActivityOutbox.objects.create(activity=activity)  # as if its claim were lost
    delivery_fanout.activities_fanout(send=False)
    assert Delivery.objects.filter(integration=segment).count() == 1


def test_every_activity_is_queued_once_however_it_is_inserted_and_only_if_it_commits(segment, app):
    """The outbox is filled by the database: identify's one-statement insert, a lifecycle service,
    a bulk insert; a rolled-back transaction queues nothing."""
    customer = make_customer(app, "queued")  # the installed activity, in identify's one statement
    lifecycle.review_create(customer=customer, rating=5)
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(3)])
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.review_create(customer=customer, rating=1)
        raise RuntimeError("rolled back")
    recorded = list(Activity.objects.order_by("created_at").values_list("pk", flat=True))
    assert len(recorded) == 5
    assert list(ActivityOutbox.objects.order_by("id").values_list("activity_id", flat=True)) == recorded


def test_a_claim_writes_nothing_to_the_activity_table_and_a_rolled_back_one_leaves_the_queue_as_it_was(
    segment, app
):
    """Claimed by deleting outbox rows: the activities' large, indexed rows are never rewritten,
    and a fan-out that dies before its commit leaves its activities queued."""
    customer = make_customer(app, "claims")
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(9)])

    def activity_writes() -> int:  # updates of the activity table by this transaction so far
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables WHERE relname = 'hub_activity'"
            )
            return cursor.fetchone()[0]

    with pytest.raises(RuntimeError), transaction.atomic():
        before = activity_writes()
        rows = store().activities_claim(ids=None, limit=4, now=timezone.now())
        assert len(rows) == 4 and activity_writes() == before
        assert ActivityOutbox.objects.count() == 6
        raise RuntimeError("the fan-out died")
    assert ActivityOutbox.objects.count() == 10
    with transaction.atomic():
        rows = store().activities_claim(ids=None, limit=100, now=timezone.now())
    assert len(rows) == 10 and not ActivityOutbox.objects.exists()
    assert [r.id for r in rows] == [
        str(pk) for pk in Activity.objects.order_by("created_at").values_list("pk", flat=True)
    ]


def test_a_claim_reads_the_outbox_by_its_indexes_even_when_claimed_rows_make_it_large(segment, app):
    """Until a vacuum the queue's table holds every row claimed since, and its statistics may say
    it is small: a claim must still go by its indexes, not read every page."""
    customer = make_customer(app, "dead-rows")
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(3000)])
    with transaction.atomic():
        assert len(store().activities_claim(ids=None, limit=5000, now=timezone.now())) == 3001
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(20)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE hub_activityoutbox")  # twenty live rows, and the dead ones' pages
    given = [str(pk) for pk in ActivityOutbox.objects.values_list("activity_id", flat=True)[:5]]

    def seq_scans() -> int:  # of the outbox, by this transaction so far
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'hub_activityoutbox'"
            )
            return cursor.fetchone()[0]

    with transaction.atomic():
        before = seq_scans()
        rows = store().activities_claim(ids=given, limit=2500, now=timezone.now())
        assert sorted(r.id for r in rows) == sorted(given) and seq_scans() == before
        rows = store().activities_claim(ids=None, limit=2500, now=timezone.now())
        assert len(rows) == 15 and seq_scans() == before


def test_a_fan_out_finds_its_activities_by_key_not_by_scanning_every_activity_ever_recorded(segment, app):
    """The activity table keeps the whole history: a claim must cost the chunk, not the table."""
    customer = make_customer(app, "history")
    history = Activity.objects.bulk_create(
        [Activity(app=app, customer=customer, kind="reviewed") for _ in range(5000)]
    )
    ActivityOutbox.objects.filter(activity__in=history).delete()  # dispatched long ago
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(20)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE hub_activity")

    def seq_scans() -> int:  # of the activity table, by this transaction so far
        with connection.cursor() as cursor:
            cursor.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'hub_activity'")
            return cursor.fetchone()[0]

    with transaction.atomic():
        before = seq_scans()
        rows = store().activities_claim(ids=None, limit=2500, now=timezone.now())
        assert len(rows) == 21 and seq_scans() == before


def test_a_claim_of_given_deliveries_reads_those_rows_only_even_with_stale_statistics(segment, app):
    """A fast-growing table's statistics lag: the claim must still go id by id, not join the ids
    with every pending row of the integration (it did, at 16 ms a claim, in bench.destinations)."""
    customer = make_customer(app, "stale")
    delivery_fanout.activities_fanout(send=False)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE integrations_delivery")  # statistics of a table with one row
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(3000)])
    while delivery_fanout.activities_fanout(send=False):
        pass
    pending = list(
        Delivery.objects.filter(integration=segment, status="pending").values_list("pk", flat=True)
    )
    assert len(pending) == 3001

    def rows_read() -> int:  # of the delivery table, by this transaction so far
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'integrations_delivery'"
            )
            return cursor.fetchone()[0]

    with transaction.atomic():
        before = rows_read()
        claimed = store().claim(integration_id=segment.pk, limit=100, due_by=None, only=pending[:100])
        assert len(claimed) == 100
        assert rows_read() - before <= 200
        before = rows_read()
        assert store().pending_any(ids=pending[:100])
        assert rows_read() - before <= 200


def test_the_circuit_probes_one_delivery_at_a_time_then_sends_the_backlog_at_once(
    segment, app, standin, settings
):
    settings.HUB_DELIVERY_BACKOFF_BASE = 3600  # without the probe, the backlog would wait an hour
    settings.HUB_DELIVERY_BACKOFF_MAX = 3600
    settings.HUB_DELIVERY_PROBE_SECONDS = 30
    standin.stop()
    for i in range(20):
        make_customer(app, f"s-{i}")
    delivery_fanout.activities_fanout()
    segment.refresh_from_db()
    assert segment.outage_since is not None and segment.probe_at > timezone.now()
    # Not yet time for a probe: nothing is sent.
    assert delivery.deliveries_send(integration_id=segment.pk).requests == 0
    Integration.objects.filter(pk=segment.pk).update(probe_at=timezone.now())
    report = delivery.deliveries_send(integration_id=segment.pk)
    assert report.requests == 1 and report.retry == 1 and report.probe_at > timezone.now()
    probe = Attempt.objects.filter(integration=segment, probe=True).get()
    assert probe.message_count == 1 and "connection error" in probe.error
    standin.start()
    Integration.objects.filter(pk=segment.pk).update(probe_at=timezone.now())
    report = delivery.deliveries_send(integration_id=segment.pk)
    assert report.recovered and report.delivered == 20
    segment.refresh_from_db()
    assert segment.outage_since is None
    assert Delivery.objects.filter(integration=segment, status="delivered").count() == 20
    standin.assert_each_once_by_id(Activity.objects.values_list("pk", flat=True))


def test_the_sweep_starts_one_sender_for_a_due_probe_and_parallel_ones_for_due_rows(
    segment, workspace, app, standin, settings, monkeypatch
):
    """A hanging probe stays due until it ends: each sweep must not queue a crowd of senders that
    would only find its slot taken, ahead of other destinations' tasks."""
    from integrations import tasks

    settings.HUB_DELIVERY_PARALLEL = 3
    healthy = integration_save(
        workspace=workspace, name="Other", write_key="wk_other", region="custom", custom_host=standin.url,
        apps=[app], activities=list(Activity.Kind.values),
    )  # fmt: skip
    standin.stop()
    make_customer(app, "s-1")
    delivery_fanout.activities_fanout(send=False)
    now = timezone.now()
    Integration.objects.filter(pk=segment.pk).update(outage_since=now, probe_at=now)
    Delivery.objects.update(next_attempt_at=now)
    sent: list[int] = []
    monkeypatch.setattr(tasks.deliveries_send, "delay", sent.append)
    tasks._deliveries_sweep()
    assert sorted(sent) == sorted([segment.pk] + [healthy.pk] * 3)
    assert delivery.probes_due() == [segment.pk]
    assert delivery.integrations_send_due() == [healthy.pk]


def test_a_fan_out_starts_no_sender_for_a_destination_slow_in_its_process(monkeypatch):
    """Its request slots are held by requests that will time out: a sender per chunk would only
    find them taken. A destination that is not slow gets its sender."""
    from integrations import send_threads, tasks
    from integrations.delivery_fanout import FanoutResult

    sent: list[int] = []
    monkeypatch.setattr(tasks.deliveries_send, "delay", sent.append)
    monkeypatch.setattr(send_threads, "_slow", {})
    send_threads._mark_slow(1)
    tasks._after_fanout(FanoutResult({1: 3, 2: 3}, waiting={1, 2}))
    assert sent == [2]


def test_a_long_outage_ends_deliveries_past_the_retry_window(segment, app, standin, settings):
    settings.HUB_DELIVERY_RETRY_WINDOW = 3600
    standin.stop()
    make_customer(app, "s-1")
    make_customer(app, "s-2")
    delivery_fanout.activities_fanout()
    Delivery.objects.update(retry_window_start=timezone.now() - timedelta(hours=2))
    Integration.objects.filter(pk=segment.pk).update(probe_at=timezone.now())
    delivery.deliveries_send(integration_id=segment.pk)
    statuses = sorted(Delivery.objects.values_list("status", flat=True))
    assert statuses == ["dead", "dead"]


def test_retention_prunes_old_finished_rows_and_leaves_pending_ones(segment, app, standin, settings):
    settings.HUB_DELIVERY_KEEP_DELIVERED_DAYS = 30
    settings.HUB_DELIVERY_KEEP_FAILED_DAYS = 90
    for i in range(6):
        make_customer(app, f"s-{i}")
    delivery_fanout.activities_fanout(send=False)
    rows = list(Delivery.objects.order_by("message_id"))
    now = timezone.now()
    old, very_old = now - timedelta(days=40), now - timedelta(days=100)
    plan = [
        ("delivered", old),  # pruned
        ("delivered", now - timedelta(days=5)),  # kept
        ("failed", old),  # kept: failed ones live 90 days
        ("dead", very_old),  # pruned
        ("pending", very_old),  # never pruned
        ("pending", very_old),  # retrying: never pruned
    ]
    for row, (status, created) in zip(rows, plan, strict=True):
        Delivery.objects.filter(pk=row.pk).update(status=status, created_at=created, attempts=1)
    Delivery.objects.filter(pk=rows[5].pk).update(next_attempt_at=now + timedelta(hours=1))
    AttemptFactory(integration=segment, outcome="delivered", created_at=old)
    AttemptFactory(integration=segment, outcome="retry", created_at=old)
    AttemptFactory(integration=segment, outcome="failed", created_at=very_old)
    counts = delivery_retention.deliveries_prune(batch=1)
    assert counts == {"deliveries": 2, "attempts": 2}
    assert sorted(Delivery.objects.values_list("status", flat=True)) == [
        "delivered", "failed", "pending", "pending",
    ]  # fmt: skip
    assert sorted(Attempt.objects.values_list("outcome", flat=True)) == ["retry"]


def test_the_log_shows_the_stored_message_backlog_and_outage(
    logged_in, workspace, segment, app, standin, settings
):
    settings.HUB_DELIVERY_BACKOFF_BASE = 600
    settings.HUB_DELIVERY_BACKOFF_MAX = 3600  # fast_retries caps it at 1 s: the page could see it due
    settings.HUB_DELIVERY_PROBE_SECONDS = 30
    customer = make_customer(app, "shop-1", custom_fields={"crm_id": "OLD"})
    Integration.objects.filter(pk=segment.pk).update(user_id_field="crm_id")
    standin.stop()
    delivery_fanout.activities_fanout()
    delivery.deliveries_send(integration_id=segment.pk)  # a no-op unless the fan-out left it due
    row = Delivery.objects.get(integration=segment)
    assert row.attempts == 1
    customer_identify(app=app, platform_id="shop-1", custom_fields={"crm_id": "NEW"})
    Integration.objects.filter(pk=segment.pk).update(user_id_field="")
    page = logged_in.get(f"/w/{workspace.slug}/integrations/{segment.pk}/deliveries/").content.decode()
    assert "Segment is refusing connections since" in page and "next probe in" in page
    assert 'data-stat="retrying">1<' in page
    assert "Retrying (attempt 2 at " in page
    assert "&quot;userId&quot;: &quot;OLD&quot;" in page  # as stored, not rebuilt
    assert f"&quot;userId&quot;: &quot;{customer.public_id}" not in page
    assert row.message_id in page and "Request as sent" in page and "Basic ••••" in page


def test_the_settings_screen_says_changes_apply_from_now_on(logged_in, workspace, segment):
    page = logged_in.get(f"/w/{workspace.slug}/integrations/{segment.pk}/").content.decode()
    assert "Changes apply to activities from now on" in page


def test_a_sweep_that_finds_a_backlog_starts_the_parallel_fan_outs_before_its_own_chunk(
    segment, app, standin, settings, monkeypatch
):
    """Not one chunk later: the backlog's other fan-outs claim while the sweep's chunk is sent."""
    from integrations import tasks

    settings.HUB_DELIVERY_PARALLEL = 3
    monkeypatch.setattr(tasks, "FANOUT_CHUNK", 10)
    customer = make_customer(app, "backlog")
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(25)])
    waiting = ActivityOutbox.objects.count()  # and the install
    calls: list[str] = []
    monkeypatch.setattr(tasks.activities_fanout, "delay", lambda *a: calls.append("fan-out task"))
    claim = delivery_fanout.activities_fanout

    def sweep_chunk(**kwargs):
        calls.append("sweep's chunk")
        return claim(**kwargs)

    monkeypatch.setattr(delivery_fanout, "activities_fanout", sweep_chunk)
    tasks._deliveries_sweep()
    assert calls == ["fan-out task"] * 3 + ["sweep's chunk"]
    assert ActivityOutbox.objects.count() == waiting - 10


def test_a_backlog_fan_out_goes_on_after_a_full_chunk_that_made_no_deliveries(
    segment, app, standin, monkeypatch
):
    """A chunk is full by its activities: one whose activities no integration sends (here a kind
    the integration left out) makes no delivery, and the fan-out still asks for the next chunk,
    which holds activities to send (judged by deliveries, the backlog waited for the sweep)."""
    from integrations import tasks

    monkeypatch.setattr(tasks, "FANOUT_CHUNK", 10)
    Integration.objects.filter(pk=segment.pk).update(activities=["installed"])
    customer = make_customer(app, "chunks")
    ActivityOutbox.objects.all().delete()  # the customer's install, left out of the chunks
    Activity.objects.bulk_create([Activity(app=app, customer=customer, kind="reviewed") for _ in range(10)])
    sent = Activity.objects.bulk_create(
        [Activity(app=app, customer=customer, kind="installed") for _ in range(5)]
    )
    asked: list[str] = []
    monkeypatch.setattr(tasks.activities_fanout, "delay", lambda *a: asked.append("next chunk"))
    assert tasks._activities_fanout(None) == 0
    assert asked == ["next chunk"]
    assert ActivityOutbox.objects.count() == 5
    assert tasks._activities_fanout(None) == 5  # not full: the chain ends here
    assert asked == ["next chunk"]
    standin.wait_for([str(a.pk) for a in sent])


def test_a_backlog_handed_over_in_one_send_starts_its_parallel_fan_outs_first(segment, app, monkeypatch):
    """The lifecycle hands a backlog over as one task with a spread (hub.task_coalescing): the
    worker starts the other fan-outs before its own chunk, so they claim in parallel with it."""
    from integrations import tasks

    order: list[str] = []
    monkeypatch.setattr(tasks.activities_fanout, "delay", lambda *a: order.append("another fan-out"))
    monkeypatch.setattr(tasks, "_activities_fanout", lambda ids: order.append(f"own chunk {ids}") or 0)
    tasks.activities_fanout(None, 3)
    assert order == ["another fan-out", "another fan-out", "own chunk None"]
    order.clear()
    tasks.activities_fanout(["an-id"])  # a task of ids (or of an older sender): no spread
    assert order == ["own chunk ['an-id']"]


def test_a_backlog_task_whose_broker_is_gone_still_fans_out_its_own_chunk(monkeypatch):
    """Starting the other fan-outs needs the broker; if it is gone, the task's own chunk still
    goes (the sweep starts the others later) rather than the task failing before its claim."""
    from kombu.exceptions import OperationalError

    from integrations import tasks

    order: list[str] = []

    def broker_gone(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.activities_fanout, "delay", broker_gone)
    monkeypatch.setattr(tasks, "_activities_fanout", lambda ids: order.append(f"own chunk {ids}") or 0)
    tasks.activities_fanout(None, 3)
    assert order == ["own chunk None"]
