"""The inbox's batches: what a receipt leaves for the workers, how workers claim it, and what a
worker process keeps between batches (sources and compiled mappings)."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from events.models import UsageEvent
from integrations.sources.models import InboxBatch, InboxMessage, Mapping
from integrations.sources.processing import inbox_process_pending, inbox_stale_count
from integrations.sources.receipt import inbox_receive

pytestmark = pytest.mark.django_db


def _track(i: int, **extra) -> dict:
    return {
        "type": "track",
        "event": "Report Generated",
        "userId": "user-1",
        "messageId": f"m-{i}",
        "properties": {"shop": "shop-1", "i": i},
        **extra,
    }


def _receive(source, items) -> None:
    inbox_receive(source=source, items=items, format_kind="segment")


def test_a_request_leaves_one_batch_of_its_valid_messages_in_order(source):
    _receive(source, [_track(1), {"type": "track", "messageId": "bad"}, _track(2), _track(3)])

    batch = InboxBatch.objects.get()
    pending = list(InboxMessage.objects.filter(status="pending").order_by("id").values_list("id", flat=True))
    assert batch.source_id == source.pk
    assert batch.message_ids == pending and batch.size == 3
    assert InboxMessage.objects.get(status="rejected").message_id == "bad"

    assert inbox_process_pending() == 3
    assert not InboxBatch.objects.exists()
    assert set(InboxMessage.objects.values_list("status", flat=True)) == {"processed", "rejected"}


def test_a_request_of_rejected_messages_only_leaves_no_batch(source):
    _receive(source, [{"type": "track", "messageId": "bad"}])
    assert not InboxBatch.objects.exists()
    assert inbox_process_pending() == 0


def test_workers_claim_whole_batches_until_the_limit_is_reached(source):
    for start in (0, 100, 200):
        _receive(source, [_track(i) for i in range(start, start + 100)])

    assert inbox_stale_count(older_than=timedelta(seconds=-60)) == 300
    assert inbox_process_pending(limit=150) == 200  # two whole batches: none is split
    assert InboxBatch.objects.count() == 1
    assert inbox_process_pending(limit=150) == 100
    assert UsageEvent.objects.filter(app=source.app).count() == 300


def test_marking_messages_processed_writes_no_index(source):
    """The inbox leaves room on its pages and no index covers the columns processing changes, so
    every mark is a HOT update (PostgreSQL's counters of this transaction)."""
    counters = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s"
    _receive(source, [_track(i) for i in range(200)])
    with connection.cursor() as cursor:
        cursor.execute(counters, ["sources_inboxmessage"])
        updated_before, hot_before = cursor.fetchone()
        assert inbox_process_pending() == 200
        cursor.execute(counters, ["sources_inboxmessage"])
        updated, hot = cursor.fetchone()
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'sources_inboxmessage'")
        options = cursor.fetchone()[0]
    assert updated - updated_before == 200
    assert hot - hot_before == 200
    assert "fillfactor=40" in options


def test_a_mapping_changed_behind_the_screens_reaches_a_worker_that_compiled_it(source):
    """The worker keeps compiled mappings between batches; a change made by a bulk update (no
    updated_at bump) or a disabled mapping is seen on the next batch all the same."""
    _receive(source, [_track(1)])
    inbox_process_pending()
    assert InboxMessage.objects.get(message_id="m-1").outcome == "stored"

    track = Mapping.objects.get(source=source, trigger='type = "track"')
    Mapping.objects.filter(pk=track.pk).update(trigger='type = "track" and event = "Other"')
    _receive(source, [_track(2)])
    inbox_process_pending()
    assert InboxMessage.objects.get(message_id="m-2").outcome == "unmatched"

    Mapping.objects.filter(pk=track.pk).update(trigger='type = "track"', enabled=False)
    _receive(source, [_track(3)])
    inbox_process_pending()
    assert InboxMessage.objects.get(message_id="m-3").outcome == "unmatched"

    Mapping.objects.filter(pk=track.pk).update(enabled=True)
    _receive(source, [_track(4)])
    inbox_process_pending()
    assert InboxMessage.objects.get(message_id="m-4").outcome == "stored"


@pytest.mark.django_db(transaction=True)
def test_a_batch_locked_by_another_worker_is_left_to_it(source):
    _receive(source, [_track(1)])
    _receive(source, [_track(2)])
    first = InboxBatch.objects.order_by("id").first()
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
    )  # fmt: skip
    try:
        other.execute("SELECT id FROM sources_inboxbatch WHERE id = %s FOR UPDATE", [first.pk])
        assert inbox_process_pending() == 1  # the other worker's batch is skipped, not waited for
        assert InboxMessage.objects.get(message_id="m-2").status == "processed"
        assert InboxMessage.objects.get(message_id="m-1").status == "pending"
    finally:
        other.rollback()  # that worker died: its batch is claimable again
        other.close()
    assert inbox_process_pending() == 1
    assert not InboxBatch.objects.exists()
    assert InboxMessage.objects.get(message_id="m-1").outcome == "stored"


@pytest.mark.django_db(transaction=True)
def test_messages_pending_before_the_batches_migration_are_batched_by_it(app):
    """Upgrading with messages still pending: migration 0004 puts them in batches for the workers."""
    executor = MigrationExecutor(connection)
    before, after = [("sources", "0003_inbox_source_fk_index")], [("sources", "0004_inbox_batches")]
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        source = old.get_model("sources", "Source").objects.create(
            app_id=app.pk, name="Old", write_key_hash="a" * 64, webhook_token_hash="b" * 64
        )
        messages = old.get_model("sources", "InboxMessage")
        for i in range(3):
            messages.objects.create(
                source=source, format="segment", message_id=f"m-{i}", type="track", event="Report Generated",
                payload=_track(i), status="pending",
            )  # fmt: skip
        messages.objects.create(
            source=source, format="segment", message_id="x", payload={}, status="rejected"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    batch = InboxBatch.objects.get()
    assert batch.size == 3
    assert batch.message_ids == list(
        InboxMessage.objects.filter(status="pending").order_by("id").values_list("id", flat=True)
    )
    assert inbox_process_pending() == 3  # the old source has no mappings: unmatched, but processed
    assert set(
        InboxMessage.objects.filter(message_id__startswith="m-").values_list("outcome", flat=True)
    ) == {"unmatched"}


_SQLITE_SCRIPT = """
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from hub.models import App, Workspace
from integrations.sources.processing import inbox_process_pending
from integrations.sources.receipt import inbox_receive
from integrations.sources.models import InboxBatch, InboxMessage
from integrations.sources.services import source_create
from events.models import UsageEvent
app = App.objects.create(workspace=Workspace.objects.create(name="W"), name="A")
source = source_create(app=app, name="Segment")
items = [{"type": "track", "event": "e", "userId": "u", "messageId": f"m-{i}",
          "properties": {"shop": "s"}} for i in range(3)] + [{"type": "track"}]
inbox_receive(source=source, items=items, format_kind="segment")
batches = list(InboxBatch.objects.values_list("size", flat=True))
done = inbox_process_pending()
print(json.dumps({"batches": batches, "done": done, "left": InboxBatch.objects.count(),
                  "events": UsageEvent.objects.count(),
                  "outcomes": sorted(InboxMessage.objects.values_list("outcome", flat=True))}))
"""


def test_the_inbox_works_on_the_embedded_sqlite_database(tmp_path):
    """`make run` uses SQLite: receipt, batches and processing take their portable paths there."""
    import json
    import os
    import subprocess
    import sys

    from tests.processes import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "HUB_"))}
    env.update(
        DEBUG="1", HUB_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="hub.settings", PYTHONPATH=str(ROOT)
    )
    out = subprocess.run(
        [sys.executable, "-c", _SQLITE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "hub.sqlite3").exists()
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "batches": [3], "done": 3, "left": 0, "events": 3, "outcomes": ["rejected", "stored", "stored", "stored"]
    }  # fmt: skip


def test_a_claim_stops_within_one_batch_of_the_limit_whatever_the_sizes(source):
    """Single calls then full batches: the claim takes the small ones and one large one, not as
    many large ones as small ones came before."""
    for i in range(10):
        _receive(source, [_track(i)])
    for start in range(100, 1100, 100):
        _receive(source, [_track(i) for i in range(start, start + 100)])

    assert inbox_process_pending(limit=50) == 110
    assert InboxBatch.objects.count() == 9


def test_a_refused_message_alone_in_its_batch_fails_without_stalling_the_inbox(source):
    """An unknown customer token is refused by the store: that message fails, the claim commits,
    and the next batches are processed (a raised refusal rolled the claim back, every time)."""
    _receive(source, [_track(1, properties={"shop": "hub_ct_unknown"})])
    _receive(source, [_track(2)])

    assert inbox_process_pending() == 2
    failed = InboxMessage.objects.get(message_id="m-1")
    assert failed.outcome == "failed" and "Unknown customer API token" in failed.error
    assert InboxMessage.objects.get(message_id="m-2").outcome == "stored"
    assert not InboxBatch.objects.exists()


def test_an_operator_can_delete_a_source_with_pending_batches(source):
    from django.test import Client

    from tests.factories import UserFactory

    _receive(source, [_track(1)])
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(f"/admin/sources/source/{source.pk}/delete/")
    assert page.status_code == 200 and b"Are you sure" in page.content
    assert client.post(f"/admin/sources/source/{source.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not InboxBatch.objects.exists() and not InboxMessage.objects.exists()
    batch_page = client.get("/admin/sources/inboxbatch/")
    assert batch_page.status_code == 200 and b"delete_selected" not in batch_page.content
