"""The delivery engine against the strict Segment stand-in, in process (no worker): messages,
settings rules, batching limits, retry classification and backoff, all read from the rows."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from hub.models import Activity
from hub.services import lifecycle
from integrations import delivery, delivery_fanout
from integrations.models import Attempt, Delivery
from integrations.services import integration_save
from integrations.vendors.segment.connector import EVENT_NAMES
from tests.factories import AppFactory
from tests.integrations.conftest import all_eleven, make_customer

pytestmark = pytest.mark.django_db


def send_all(integration):
    delivery_fanout.activities_fanout(send=False)
    return delivery.deliveries_send(integration_id=integration.pk)


def test_the_eleven_activities_arrive_as_object_action_track_calls(segment, app, standin):
    customer = all_eleven(app)
    report = send_all(segment)
    assert report.delivered == 11 and report.requests == 1
    assert not standin.violations
    by_event = {m["event"]: m for m in standin.messages}
    assert set(by_event) == {EVENT_NAMES[k] for k in Activity.SEED_KINDS}
    activities = {str(a.pk): a for a in Activity.objects.filter(customer=customer)}
    for m in standin.messages:
        activity = activities[m["messageId"]]  # messageId is the activity id
        assert m["userId"] == str(customer.public_id)
        assert m["context"]["library"]["name"] == "integration-hub"
        assert m["timestamp"].startswith(activity.occurred_at.strftime("%Y-%m-%dT%H:%M:%S"))
        assert m["properties"]["app"] == app.name
    assert by_event["Plan Upgraded"]["properties"] | {} == by_event["Plan Upgraded"]["properties"]
    upgraded = by_event["Plan Upgraded"]["properties"]
    assert (upgraded["plan"], upgraded["price"], upgraded["previous_plan"], upgraded["previous_price"]) == (
        "Pro", 30.0, "Basic", 10.0,
    )  # fmt: skip
    assert by_event["App Reviewed"]["properties"]["rating"] == 4
    assert Delivery.objects.filter(integration=segment, status="delivered").count() == 11
    attempt = Attempt.objects.get(integration=segment)
    assert attempt.status_code == 200 and attempt.message_count == 11 and len(attempt.delivery_ids) == 11


def test_settings_rules_apps_activities_and_user_id_field(workspace, app, standin, fast_retries):
    other_app = AppFactory(workspace=workspace)
    integration = integration_save(
        workspace=workspace, name="Staging", write_key="wk_live_123", region="custom", custom_host=standin.url,
        apps=[app], activities=["installed", "upgraded"], user_id_field="crm_id",
    )  # fmt: skip
    disabled = integration_save(
        workspace=workspace, name="Off", write_key="wk_live_123", region="custom", custom_host=standin.url,
        apps=[app], activities=list(Activity.Kind.values), enabled=False,
    )  # fmt: skip
    with_field = make_customer(app, "a", custom_fields={"crm_id": "CRM-7"})
    without_field = make_customer(app, "b")
    make_customer(other_app, "c")  # an app the integration does not have
    lifecycle.installation_freeze(customer=with_field)  # an activity it does not send
    send_all(integration)
    assert delivery.deliveries_send(integration_id=disabled.pk).requests == 0
    users = sorted((m["event"], m["userId"]) for m in standin.messages)
    assert users == sorted([("App Installed", "CRM-7"), ("App Installed", str(without_field.public_id))])
    assert not Delivery.objects.filter(integration=disabled).exists()


def test_batches_stay_within_segment_limits_and_an_oversize_message_fails_alone(segment, app, standin):
    big_text = "x" * 20_000  # ~20 KB messages: 25 of them cannot share one 500 KB batch
    for i in range(60):
        customer = make_customer(app, f"shop-{i}")
        lifecycle.activity_record(customer=customer, kind="reviewed", properties={"review": big_text})
    huge = make_customer(app, "huge")
    lifecycle.activity_record(
        customer=huge, kind="reviewed", properties={"review": "y" * 40_000}
    )  # over 32 KB
    report = send_all(segment)
    assert not standin.violations
    assert report.requests >= 3
    assert len(set(standin.message_ids())) == 60 + 61  # installs and reviews, but not the huge review
    failed = Delivery.objects.get(status="failed")
    assert failed.activity.customer == huge and "over the 32768-byte limit" in failed.last_error
    assert Delivery.objects.filter(status="delivered").count() == 121
    assert all(a.request_bytes <= 500 * 1024 for a in Attempt.objects.exclude(url=""))


def test_batches_hold_at_most_2500_messages(segment, app, standin, monkeypatch):
    customers = [make_customer(app, f"s{i}") for i in range(3)]
    for _ in range(900):
        for c in customers:
            lifecycle.activity_record(customer=c, kind="reviewed", properties={"rating": 3})
    report = send_all(segment)
    assert not standin.violations and report.delivered == 2703
    assert max(a.message_count for a in Attempt.objects.all()) <= 2500


@pytest.mark.parametrize(
    ("status", "headers", "outcome"),
    [(500, {}, "retry"), (503, {}, "retry"), (408, {}, "retry"), (429, {"Retry-After": "7"}, "retry"),
     (400, {}, "failed"), (404, {}, "failed"), (401, {}, "failed")],
)  # fmt: skip
def test_answers_are_classified(segment, app, standin, status, headers, outcome):
    make_customer(app, "s1")
    standin.fail_next(1, status, headers)
    before = timezone.now()
    send_all(segment)
    row = Delivery.objects.get(integration=segment)
    attempt = Attempt.objects.get(integration=segment)
    assert attempt.status_code == status and attempt.outcome == outcome and row.attempts == 1
    segment.refresh_from_db()
    assert segment.needs_attention is (status == 401)
    if outcome == "failed":
        assert row.status == "failed" and row.next_attempt_at is None
    else:
        assert row.status == "pending"
        low, high = (
            (7, 8) if status == 429 else (0.1, 0.2)
        )  # Retry-After honoured; else base 0.2 s with jitter
        assert (
            before + timedelta(seconds=low) <= row.next_attempt_at <= timezone.now() + timedelta(seconds=high)
        )


def test_timeouts_and_refused_connections_are_retried(segment, app, standin, clock):
    make_customer(app, "s1")
    standin.hang_next(1, 2.0)  # past the 1 s timeout
    send_all(segment)
    row = Delivery.objects.get()
    assert row.status == "pending" and "timeout" in row.last_error
    standin.stop()
    clock.advance(0.5)
    delivery.deliveries_send(integration_id=segment.pk)
    row.refresh_from_db()
    assert row.status == "pending" and row.attempts == 2 and "connection error" in row.last_error
    standin.start()  # the same port again
    clock.advance(1.1)
    delivery.deliveries_send(integration_id=segment.pk)
    row.refresh_from_db()
    assert row.status == "delivered" and row.attempts == 3
    assert list(standin.message_ids().values()) == [1]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(settings):
    settings.HUB_DELIVERY_BACKOFF_BASE, settings.HUB_DELIVERY_BACKOFF_MAX = 10, 3600
    for attempt, full in [(1, 10), (2, 20), (3, 40), (10, 3600), (30, 3600)]:
        delays = {delivery.backoff_delay(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1


def test_after_the_retry_window_a_delivery_is_dead(segment, app, standin, settings):
    settings.HUB_DELIVERY_RETRY_WINDOW = 60
    make_customer(app, "s1")
    delivery_fanout.activities_fanout(send=False)
    Delivery.objects.update(retry_window_start=timezone.now() - timedelta(seconds=60))
    standin.fail_next(1, 500)
    delivery.deliveries_send(integration_id=segment.pk)
    row = Delivery.objects.get()
    assert row.status == "dead" and "retry window" in row.last_error


def test_one_failing_integration_does_not_hold_up_another(segment, workspace, app, standin, fast_retries):
    from tests.segment_standin import SegmentStandIn

    healthy_server = SegmentStandIn(write_key="wk_2").start()
    try:
        healthy = integration_save(
            workspace=workspace, name="Healthy", write_key="wk_2", region="custom",
            custom_host=healthy_server.url, apps=[app], activities=["installed"],
        )  # fmt: skip
        standin.hang_next(100, 2.0)
        make_customer(app, "s1")
        delivery_fanout.activities_fanout(send=False)
        started = time.monotonic()
        delivery.deliveries_send(integration_id=segment.pk)  # times out once, then stops
        assert time.monotonic() - started < 2
        delivery.deliveries_send(integration_id=healthy.pk)
        assert len(healthy_server.messages) == 1
    finally:
        healthy_server.stop()
