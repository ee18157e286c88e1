"""Billing signals: plan usage limits crossed record their activities exactly once per period."""

import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from events.metrics.definitions import definition_validate
from events.metrics.limits import plan_usage_limit_set
from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.metrics.services import metric_create
from events.models import RollupBatch, UsageSignal
from events.services import usage_events_ingest
from hub.models import Activity, Customer
from hub.services.customers import customer_identify
from hub.services.lifecycle import subscription_subscribe
from hub.services.plans import plan_upsert
from tests.factories import AppFactory, api_key_for
from tests.processes import CeleryWorker


def _setup(app):
    customer_identify(app=app, platform_id="shop-1")  # a first identify installs the app
    customer = Customer.objects.get(app=app, platform_id="shop-1")
    basic, _ = plan_upsert(app=app, name="Basic", amount=10)
    pro, _ = plan_upsert(app=app, name="Pro", amount=50)
    metric = metric_create(app=app, definition=definition_validate(name="API calls", event_name="api_call"))
    metrics_rebuild(app_pk=app.pk)
    plan_usage_limit_set(plan=basic, metric=metric, limit=100, thresholds=[80, 100])
    plan_usage_limit_set(plan=pro, metric=metric, limit=1000)
    subscription_subscribe(customer=customer, plan=basic)
    return customer, metric


def _usage_activities(customer):
    return list(
        Activity.objects.filter(customer=customer, kind__in=Activity.USAGE_KINDS)
        .order_by("created_at")
        .values_list("kind", "properties")
    )


def _calls(n, start=0):
    return [
        {"eventName": "api_call", "eventId": f"c{i}", "customerId": "shop-1"} for i in range(start, start + n)
    ]


@pytest.mark.django_db
def test_each_threshold_is_recorded_once_then_upgrade_suggested():
    app = AppFactory()
    customer, _ = _setup(app)
    usage_events_ingest(app=app, raw_events=_calls(79))
    rollups_drain(app_pks=[app.pk])
    assert _usage_activities(customer) == []

    usage_events_ingest(app=app, raw_events=_calls(1, start=79))
    rollups_drain(app_pks=[app.pk])
    kinds = [k for k, _ in _usage_activities(customer)]
    assert kinds == ["usage_limit_approaching"]
    props = _usage_activities(customer)[0][1]
    assert (props["value"], props["limit"], props["threshold_percent"], props["plan"]) == (
        80,
        100,
        80,
        "Basic",
    )

    usage_events_ingest(app=app, raw_events=_calls(10, start=80))  # still between 80 % and 100 %
    rollups_drain(app_pks=[app.pk])
    assert [k for k, _ in _usage_activities(customer)] == ["usage_limit_approaching"]

    usage_events_ingest(app=app, raw_events=_calls(30, start=90))
    rollups_drain(app_pks=[app.pk])
    activities = _usage_activities(customer)
    assert [k for k, _ in activities] == [
        "usage_limit_approaching",
        "usage_limit_reached",
        "upgrade_suggested",
    ]
    assert activities[2][1]["suggested_plan"] == "Pro"
    assert UsageSignal.objects.filter(customer=customer).count() == 2


@pytest.mark.django_db
def test_no_signal_without_an_active_subscription_or_a_limit():
    app = AppFactory()
    customer_identify(app=app, platform_id="shop-1")
    metric_create(app=app, definition=definition_validate(name="API calls", event_name="api_call"))
    metrics_rebuild(app_pk=app.pk)
    usage_events_ingest(app=app, raw_events=_calls(500))
    rollups_drain(app_pks=[app.pk])
    assert not Activity.objects.filter(kind__in=Activity.USAGE_KINDS).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_threshold_crossed_by_concurrent_ingests_is_recorded_once():
    app = AppFactory()
    _, secret = api_key_for(app)
    customer, _ = _setup(app)
    headers = {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": secret}
    errors = []

    def send(thread: int):
        client = Client(headers=headers)
        for k in range(15):
            events = _calls(5, start=thread * 1000 + k * 5)
            response = client.post(
                "/v1/usage_events", json.dumps({"events": events}), content_type="application/json"
            )
            if response.status_code != 200:
                errors.append(response.content)
        connection.close()  # each thread ingested on its own connection

    workers = [CeleryWorker(name=f"limits-{i}", concurrency=2).start() for i in range(2)]
    try:
        threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        deadline = time.monotonic() + 60
        while RollupBatch.objects.filter(app=app).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not RollupBatch.objects.filter(app=app).exists(), "the workers must drain every batch"
    finally:
        for w in workers:
            w.stop()

    # 4 x 15 x 5 = 300 calls: both thresholds of the limit of 100 crossed, each recorded once.
    kinds = sorted(k for k, _ in _usage_activities(customer))
    assert kinds == ["upgrade_suggested", "usage_limit_approaching", "usage_limit_reached"]
    assert UsageSignal.objects.filter(customer=customer).count() == 2
