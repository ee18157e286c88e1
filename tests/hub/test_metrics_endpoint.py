"""GET /metrics (hub/observability): off by default, token-protected when on, and its figures move
when work arrives: ingested events, inbox messages, deliveries pending and given up, requests."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from events.models import RollupBatch
from hub.celery import app as celery_app
from hub.models import Activity
from hub.services.customers import customer_identify
from integrations import delivery, delivery_fanout
from integrations.services import integration_save
from integrations.sources.models import InboxBatch
from integrations.sources.processing import inbox_process_pending
from integrations.sources.receipt import inbox_receive
from integrations.sources.services import source_cache_clear, source_create
from tests.segment_standin import SegmentStandIn

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_on(settings):
    settings.HUB_METRICS_TOKEN = TOKEN
    return settings


@pytest.fixture
def scraper(metrics_on):
    return Client(headers={"Authorization": f"Bearer {TOKEN}"})


def scrape(client) -> dict[tuple, float]:
    """{(sample name, (label, value) pairs sorted): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def figure(figures, name, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


# --- Off, and the token ------------------------------------------------------------------------


def test_off_by_default_the_endpoint_is_not_found(client, settings):
    settings.HUB_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


def test_without_a_bearer_token_401_and_with_a_wrong_one_403(client, metrics_on):
    response = client.get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 403
    assert b"hub_" not in client.get("/metrics", headers={"Authorization": "Bearer wrong"}).content


def test_with_the_token_200_in_prometheus_text_format(scraper):
    figures = scrape(scraper)
    assert figure(figures, "hub_figures_up", part="database") == 1
    assert figure(figures, "hub_figures_up", part="broker") == 1
    assert ("hub_celery_queue_length", (("queue", "celery"),)) in figures


# --- Figures move when work arrives -----------------------------------------------------------


def test_ingested_events_show_as_rollup_lag_and_request_counts(scraper, api_client):
    RollupBatch.objects.all().delete()
    before = scrape(scraper)
    assert figure(before, "hub_rollup_pending_batches") == 0
    assert figure(before, "hub_rollup_lag_seconds") == 0

    body = {
        "events": [{"eventName": "api_call", "eventId": f"e-{i}", "customerId": "shop-1"} for i in range(3)]
    }
    for _ in range(2):
        response = api_client.post("/v1/usage_events", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    RollupBatch.objects.update(created_at=timezone.now() - timedelta(seconds=90))

    after = scrape(scraper)
    assert figure(after, "hub_rollup_pending_batches") == 1  # the second post stored only duplicates
    assert figure(after, "hub_rollup_lag_seconds") >= 90
    count = "hub_http_request_duration_seconds_count"
    labels = {"route": "v1/usage_events", "method": "POST", "status": "200"}
    assert figure(after, count, **labels) - figure(before, count, **labels) == 2
    scrapes = {"route": "metrics", "method": "GET", "status": "200"}
    assert figure(after, count, **scrapes) - figure(before, count, **scrapes) == 1


def test_request_labels_are_route_patterns_never_paths(scraper, client):
    client.get("/hooks/wh_not_a_real_token_but_long_enough")
    client.get("/no/such/page/secret-looking-path")
    client.generic("BREW", "/healthz")
    text = scraper.get("/metrics").content.decode()
    assert "wh_not_a_real_token" not in text and "secret-looking-path" not in text
    figures = scrape(scraper)
    assert (
        figure(
            figures,
            "hub_http_request_duration_seconds_count",
            route="(unmatched)",
            method="GET",
            status="404",
        )
        >= 1
    )
    assert (
        figure(
            figures, "hub_http_request_duration_seconds_count", route="healthz", method="other", status="200"
        )
        >= 1
    )
    assert any(name[0].endswith("_count") and ("route", "hooks/<str:token>") in name[1] for name in figures)


def test_inbox_depth_and_oldest_pending_age_per_source(scraper, app):
    source_cache_clear()
    source = source_create(app=app, name="Segment")
    labels = {"source": str(source.public_id), "kind": "segment"}
    assert figure(scrape(scraper), "hub_inbox_pending_messages", **labels) == 0

    track = {"type": "track", "event": "Report Generated", "userId": "u-1", "properties": {"shop": "s-1"}}
    inbox_receive(
        source=source, items=[{**track, "messageId": f"m-{i}"} for i in range(3)], format_kind="segment"
    )
    inbox_receive(source=source, items=[{**track, "messageId": "m-9"}], format_kind="segment")
    InboxBatch.objects.filter(source=source).update(created_at=timezone.now() - timedelta(seconds=60))

    figures = scrape(scraper)
    assert figure(figures, "hub_inbox_pending_messages", **labels) == 4
    assert figure(figures, "hub_inbox_oldest_pending_age_seconds", **labels) >= 60

    inbox_process_pending()
    figures = scrape(scraper)
    assert figure(figures, "hub_inbox_pending_messages", **labels) == 0
    assert figure(figures, "hub_inbox_oldest_pending_age_seconds", **labels) == 0


@pytest.fixture
def segment(workspace, app, settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    settings.HUB_DELIVERY_TIMEOUT = 2.0
    standin = SegmentStandIn(write_key="wk_live_123").start()
    integration = integration_save(
        workspace=workspace,
        name="Production",
        write_key="wk_live_123",
        region="custom",
        custom_host=standin.url,
        apps=[app],
        activities=list(Activity.Kind.values),
    )
    yield integration, standin
    standin.stop()


def test_delivery_backlog_lag_attempts_and_given_up_per_integration(scraper, app, segment):
    integration, standin = segment
    labels = {"integration": str(integration.pk), "kind": "segment"}
    for ref in ("shop-1", "shop-2", "shop-3"):
        customer_identify(app=app, platform_id=ref)  # each records an "installed" activity
    delivery_fanout.activities_fanout(send=False)
    from integrations.models import Delivery

    Delivery.objects.filter(integration=integration).update(created_at=timezone.now() - timedelta(seconds=30))

    figures = scrape(scraper)
    assert figure(figures, "hub_delivery_backlog", **labels, state="due") == 3
    assert figure(figures, "hub_delivery_backlog", **labels, state="retrying") == 0
    assert figure(figures, "hub_delivery_lag_seconds", **labels) >= 30
    assert figure(figures, "hub_integration_needs_attention", **labels) == 0

    standin.fail_next(1, 401)
    delivery.deliveries_send(integration_id=integration.pk)

    figures = scrape(scraper)
    assert figure(figures, "hub_delivery_backlog", **labels, state="due") == 0
    assert figure(figures, "hub_delivery_lag_seconds", **labels) == 0
    assert figure(figures, "hub_delivery_attempts_recent", **labels, outcome="failed") == 1
    assert figure(figures, "hub_delivery_attempts_recent", **labels, outcome="delivered") == 0
    assert figure(figures, "hub_deliveries_given_up_recent", **labels, status="failed") == 3
    assert figure(figures, "hub_integration_needs_attention", **labels) == 1


def test_a_destination_that_fails_retryably_shows_retrying_and_the_outage(scraper, app, segment):
    integration, standin = segment
    labels = {"integration": str(integration.pk), "kind": "segment"}
    customer_identify(app=app, platform_id="shop-1")
    delivery_fanout.activities_fanout(send=False)
    standin.fail_next(1, 503)
    delivery.deliveries_send(integration_id=integration.pk)

    figures = scrape(scraper)
    assert figure(figures, "hub_delivery_backlog", **labels, state="retrying") == 1
    assert figure(figures, "hub_delivery_attempts_recent", **labels, outcome="retry") == 1
    assert figure(figures, "hub_integration_outage_seconds", **labels) > 0


def test_celery_queue_length_counts_waiting_tasks(scraper):
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    before = figure(scrape(scraper), "hub_celery_queue_length", queue="celery")
    for _ in range(3):
        celery_app.send_task("hub.ping", args=["x"], ignore_result=True)
    after = figure(scrape(scraper), "hub_celery_queue_length", queue="celery")
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    assert after - before == 3
