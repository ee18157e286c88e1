"""Every create or change guarded by a unique constraint, raced by real requests against two
gunicorn workers: no 5xx, exactly one row, and the loser answers 409 (or the idempotent result).

Each race pre-connects one socket per request (each sync worker then holds one, waiting for its
request), releases the requests together with a barrier, and is repeated a few times. The unique
constraints written only by Celery tasks (metric rollups and distinct-value counters, usage
signals) insert with ON CONFLICT or catch the violation in the task; plan names (hub_apply only)
and memberships go through Django's race-safe update_or_create.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from django.test import Client

from events.models import Metric, PlanUsageLimit, UsageEvent
from hub.models import Activity, App, Contact, Customer, Installation, Subscription, Workspace
from hub.services.customers import customer_identify
from hub.services.plans import plan_upsert
from integrations.models import Integration
from integrations.sources.models import Mapping, Source
from integrations.sources.services import source_create
from tests.factories import (
    AppFactory,
    CustomerFactory,
    MembershipFactory,
    MetricFactory,
    UserFactory,
    api_key_for,
)
from tests.processes import Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # Rate limits off: the races are many requests of one key in a short time.
    with Gunicorn(workers=2, name="races", HUB_RATE_LIMIT="off", HUB_SOURCE_RATE_LIMIT="off") as web:
        yield web


def race(server: Gunicorn, requests: list[tuple[str, str, object, dict]]) -> list[tuple[int, dict | str]]:
    """Send `requests` (method, path, JSON body or form dict or None, headers) all at once."""
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=60) for _ in requests]
    for connection in connections:
        connection.connect()
    barrier = threading.Barrier(len(requests))

    def send(i: int) -> tuple[int, dict | str]:
        method, path, body, headers = requests[i]
        headers = dict(headers)
        if isinstance(body, dict) and headers.get("Content-Type") == "application/x-www-form-urlencoded":
            raw = urlencode(body, doseq=True).encode()
        else:
            raw = None if body is None else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        barrier.wait()
        connections[i].request(method, path, body=raw, headers=headers)
        response = connections[i].getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(send, range(len(requests))))
    finally:
        for connection in connections:
            connection.close()


def assert_no_server_error(results, server):
    assert all(status < 500 for status, _ in results), (results, server.output()[-3000:])


def statuses(results) -> list[int]:
    return sorted(status for status, _ in results)


@pytest.fixture
def app_key(server):
    app = AppFactory()
    return app, {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key_for(app)[1]}


# --- /v1/ ---------------------------------------------------------------------------------------


def test_usage_metrics_created_with_one_name_at_once_make_one_metric(server, app_key):
    """metric_unique_name, on create."""
    app, headers = app_key
    for n in range(ROUNDS):
        body = {"name": f"Jobs {n}", "eventName": "job"}
        results = race(server, [("POST", "/v1/usage_metrics", body, headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [201, 409]
        assert Metric.objects.filter(app=app, name=f"Jobs {n}").count() == 1


def test_usage_metrics_renamed_to_one_name_at_once_keep_one(server, app_key):
    """metric_unique_name, on change."""
    app, headers = app_key
    for n in range(ROUNDS):
        ids = [
            str(MetricFactory(app=app, name=name, event_name="job").public_id) for name in (f"a{n}", f"b{n}")
        ]
        renamed = {"name": f"Same {n}", "eventName": "job"}
        results = race(server, [("PUT", f"/v1/usage_metrics/{i}", renamed, headers) for i in ids])
        assert_no_server_error(results, server)
        assert statuses(results) == [200, 409]
        assert Metric.objects.filter(app=app, name=f"Same {n}").count() == 1


def test_subscribes_of_one_customer_at_once_open_one_subscription(server, app_key):
    """subscription_one_open_per_customer."""
    app, headers = app_key
    plan, _ = plan_upsert(app=app, name="Pro", amount=10)
    for n in range(ROUNDS):
        customer_identify(app=app, platform_id=f"shop-{n}")
        body = {"customerId": f"shop-{n}", "planId": str(plan.public_id)}
        results = race(server, [("POST", "/v1/subscriptions", body, headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [200, 409]
        assert Subscription.objects.filter(customer__platform_id=f"shop-{n}", app=app).count() == 1


def test_installs_of_one_customer_at_once_make_one_installation(server, app_key):
    """The installation's one-to-one customer (unique)."""
    app, headers = app_key
    for n in range(ROUNDS):
        customer = CustomerFactory(app=app, platform_id=f"new-{n}", placeholder=True)
        body = {"customerId": f"new-{n}"}
        results = race(server, [("POST", "/v1/app_installations/install", body, headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [200, 409]
        assert Installation.objects.filter(customer=customer).count() == 1


def test_identifies_of_one_new_customer_at_once_make_one_customer_and_contact(server, app_key):
    """customer_unique_platform_id, customer_unique_myshopify_domain, contact_unique_email."""
    app, headers = app_key
    for n in range(ROUNDS):
        body = {"platformId": f"p-{n}", "myshopifyDomain": f"s{n}.myshopify.com",
                "contacts": [{"email": f"owner{n}@example.com"}]}  # fmt: skip
        results = race(server, [("POST", "/v1/identify", body, headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [200, 200]
        assert results[0][1]["apiToken"] == results[1][1]["apiToken"]
        assert Customer.objects.filter(app=app, platform_id=f"p-{n}").count() == 1
        assert Contact.objects.filter(customer__app=app, email=f"owner{n}@example.com").count() == 1


def test_identifies_of_one_new_customer_without_contacts_at_once_make_one_customer_and_install(
    server, app_key
):
    """The one-statement insert of a new customer (ON CONFLICT DO NOTHING): the loser takes the
    locked path and answers the winner's token; one installation, one `installed` activity."""
    app, headers = app_key
    for n in range(ROUNDS):
        body = {"platformId": f"q-{n}", "myshopifyDomain": f"q{n}.myshopify.com", "name": f"Shop {n}"}
        results = race(server, [("POST", "/v1/identify", body, headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [200, 200]
        assert results[0][1]["apiToken"] == results[1][1]["apiToken"]
        customer = Customer.objects.get(app=app, platform_id=f"q-{n}")
        assert Installation.objects.filter(customer=customer).count() == 1
        assert Activity.objects.filter(customer=customer, kind=Activity.Kind.INSTALLED).count() == 1


def test_usage_events_of_one_new_customer_and_one_event_id_at_once_are_stored_once(server, app_key):
    """usage_event_unique_event_id, and the placeholder customer's customer_unique_platform_id."""
    app, headers = app_key
    for n in range(ROUNDS):
        event = {"eventName": "job", "eventId": f"e-{n}", "customerId": f"c-{n}"}
        results = race(server, [("POST", "/v1/usage_events", event, headers)] * 2)
        assert_no_server_error(results, server)
        assert sorted((body["accepted"], body["duplicates"]) for _, body in results) == [(0, 1), (1, 0)]
        assert UsageEvent.objects.filter(app=app, event_id=f"e-{n}").count() == 1
        assert Customer.objects.filter(app=app, platform_id=f"c-{n}").count() == 1


def test_first_metronome_and_kable_requests_at_once_make_one_source_each(server):
    """source_one_per_vendor_kind."""
    for _ in range(ROUNDS):
        app = AppFactory()
        secret = api_key_for(app)[1]
        event = {
            "transaction_id": "t",
            "customer_id": "c",
            "event_type": "e",
            "timestamp": "2024-03-01T12:00:00Z",
        }
        kable = {"transactionId": "k", "clientId": "c", "timestamp": "2024-03-01T12:00:00Z", "data": {}}
        kable_headers = {"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": secret}
        results = race(
            server, [("POST", "/metronome/v1/ingest", [event], {"Authorization": f"Bearer {secret}"})] * 2
        )
        results += race(server, [("POST", "/kable/api/v1/events/create", kable, kable_headers)] * 2)
        assert_no_server_error(results, server)
        assert statuses(results) == [200] * 4
        assert Source.objects.filter(app=app, kind="metronome").count() == 1
        assert Source.objects.filter(app=app, kind="kable").count() == 1


# --- Screens --------------------------------------------------------------------------------------


@pytest.fixture
def browser(server):
    """A signed-in member's cookies and CSRF header for form posts to the server."""
    membership = MembershipFactory(user=UserFactory())
    client = Client()
    client.force_login(membership.user)
    csrf = secrets.token_hex(16)  # 32 characters: Django takes an unmasked secret as the token
    headers = {
        "Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}",
        "X-CSRFToken": csrf,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return membership.workspace, headers


def _screen_race(server, path, form, headers):
    """The winner is redirected; the loser sees the form again with the error (200 or 400)."""
    results = race(server, [("POST", path, form, headers)] * 2)
    assert_no_server_error(results, server)
    assert 302 in statuses(results) and set(statuses(results)) <= {200, 302, 400}, statuses(results)
    return results


def test_workspaces_created_with_one_name_at_once_make_one(server, browser):
    """Workspace name and slug (unique)."""
    _, headers = browser
    for n in range(ROUNDS):
        _screen_race(server, "/workspaces/new/", {"name": f"Acme {n}"}, headers)
        assert Workspace.objects.filter(name=f"Acme {n}").count() == 1


def test_apps_created_with_one_name_at_once_make_one(server, browser):
    """app_unique_name."""
    workspace, headers = browser
    for n in range(ROUNDS):
        _screen_race(server, f"/w/{workspace.slug}/apps/new/", {"name": f"App {n}"}, headers)
        assert App.objects.filter(workspace=workspace, name=f"App {n}").count() == 1


def test_sources_created_with_one_name_at_once_make_one(server, browser):
    """source_unique_name."""
    workspace, headers = browser
    app = AppFactory(workspace=workspace)
    for n in range(ROUNDS):
        _screen_race(server, f"/apps/{app.public_id}/sources/", {"name": f"Segment {n}"}, headers)
        assert Source.objects.filter(app=app, name=f"Segment {n}").count() == 1


def test_integrations_created_with_one_name_at_once_make_one(server, browser):
    """integration_unique_name."""
    workspace, headers = browser
    for n in range(ROUNDS):
        form = {"name": f"Segment {n}", "write_key": "wk-123", "region": "us", "enabled": "on"}
        _screen_race(server, f"/w/{workspace.slug}/integrations/segment/new/", form, headers)
        assert Integration.objects.filter(workspace=workspace, name=f"Segment {n}").count() == 1


def test_mappings_created_with_one_name_at_once_make_one(server, browser):
    """mapping_unique_name."""
    workspace, headers = browser
    app = AppFactory(workspace=workspace)
    source = source_create(app=app, name="Segment", presets=())
    for n in range(ROUNDS):
        form = {"name": f"Map {n}", "trigger": 'type = "track"', "action": "contact", "enabled": "on",
                "kind_email": "path", "value_email": "$.traits.email",
                "kind_customer_id": "path", "value_customer_id": "$.userId"}  # fmt: skip
        _screen_race(server, f"/apps/{app.public_id}/sources/{source.public_id}/mappings/new/", form, headers)
        assert Mapping.objects.filter(source=source, name=f"Map {n}").count() == 1


def test_plan_limits_set_at_once_make_one(server, browser):
    """plan_usage_limit_unique."""
    workspace, headers = browser
    app = AppFactory(workspace=workspace)
    plan, _ = plan_upsert(app=app, name="Pro", amount=10)
    for n in range(ROUNDS):
        metric = MetricFactory(app=app, name=f"m{n}", event_name="job")
        form = {f"limit_{plan.public_id}": "100", f"thresholds_{plan.public_id}": "80, 100"}
        _screen_race(server, f"/apps/{app.public_id}/metrics/{metric.public_id}/limits/", form, headers)
        assert PlanUsageLimit.objects.filter(plan=plan, metric=metric).count() == 1
