"""A workspace with something on every screen: apps, plans, metrics with limits, customers with
lifecycles, usage events, sources with mappings and messages, a Segment integration with deliveries.

Used by the screen tour (tests/test_screen_tour.py) and handy for looking at the screens by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.services import usage_events_ingest
from hub.config_apply import config_apply
from hub.models import App, Customer, Workspace
from hub.services import lifecycle
from hub.services.customer_refs import customer_get
from hub.services.customers import customer_identify
from hub.services.plans import plan_get
from integrations import delivery_fanout
from integrations.models import Integration
from integrations.sources.models import Source
from integrations.sources.processing import inbox_process_pending
from integrations.sources.receipt import inbox_receive
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery"


@dataclass
class ScreenData:
    workspace: Workspace
    app: App
    customer: Customer
    source: Source
    integration: Integration
    email: str
    password: str


def screen_data_create(*, email: str = "owner@example.com") -> ScreenData:
    """Create the workspace "Acme" owned by `email` (password PASSWORD) with data on every screen."""
    # A staff superuser, so the sidebar's "Admin console" (the operator's console) is part of the tour.
    UserFactory(username=email, email=email, is_staff=True, is_superuser=True)
    config_apply(
        document={
            "workspace": "Acme",
            "owner_email": email,
            "members": [{"email": "dev@example.com", "role": "member"}],
            "apps": [
                {
                    "name": "Upsell",
                    "api_keys": ["production"],
                    "plans": [
                        {"name": "Basic", "price": 9, "interval": "EVERY_30_DAYS"},
                        {"name": "Pro", "price": 49, "interval": "EVERY_30_DAYS"},
                    ],
                    "metrics": [
                        {
                            "name": "Jobs run",
                            "event_name": "job_run",
                            "aggregation": "count",
                            "limits": [
                                {"plan": "Basic", "limit": 100, "thresholds": [80, 100]},
                                {"plan": "Pro", "limit": 1000},
                            ],
                        },
                        {"name": "Units", "event_name": "job_run", "aggregation": "sum", "property": "units"},
                    ],
                    "sources": [{"name": "Website", "mappings": [{"preset": "mantle_track"}]}],
                },
                {"name": "Reviews"},
            ],
            "integrations": [
                {
                    "name": "Segment production",
                    "write_key": "wk_screen_tour_1234",
                    "region": "custom",
                    "custom_host": "http://127.0.0.1:9",
                    "apps": ["Upsell"],
                }
            ],
            "destinations": [
                {
                    "name": "Metronome billing",
                    "kind": "metronome",
                    "secret": "mt_screen_tour_5678",
                    "url": "http://127.0.0.1:9",
                    "apps": ["Upsell"],
                }
            ],
        }
    )
    workspace = Workspace.objects.get(name="Acme")
    app = App.objects.get(workspace=workspace, name="Upsell")
    now = timezone.now()
    for i, (ref, name) in enumerate(
        [("shop-1", "Ada's Shop"), ("shop-2", "Bolt Supply"), ("shop-3", "Cedar")]
    ):
        customer_identify(
            app=app,
            platform_id=ref,
            name=name,
            email=f"owner@{ref}.example",
            custom_fields={"crm_id": f"crm-{i}", "tier": "gold"},
        )
    customer = customer_get(app=app, reference="shop-1")
    basic = plan_get(app=app, reference="Basic")
    pro = plan_get(app=app, reference="Pro")
    lifecycle.subscription_subscribe(customer=customer, plan=basic)
    lifecycle.review_create(customer=customer, rating=5, text="Great app")
    lifecycle.subscription_subscribe(customer=customer_get(app=app, reference="shop-2"), plan=pro)
    events = [
        {
            "eventName": "job_run",
            "customerId": f"shop-{1 + i % 3}",
            "timestamp": (now - timedelta(hours=i * 5)).isoformat(),
            "properties": {"units": 1 + i % 7},
        }
        for i in range(90)
    ]
    usage_events_ingest(app=app, raw_events=events)
    metrics_rebuild(app_pk=app.pk)
    rollups_drain(app_pks=[app.pk])
    source = Source.objects.get(app=app, name="Website")
    inbox_receive(
        source=source,
        items=[
            {
                "type": "track",
                "event": "job_run",
                "userId": "shop-1",
                "properties": {"units": 3, "shop": "shop-1"},
            },
            {"type": "identify", "userId": "shop-2", "traits": {"name": "Bolt Supply"}},
        ],
    )
    inbox_process_pending()
    delivery_fanout.activities_fanout()
    return ScreenData(
        workspace=workspace,
        app=app,
        customer=customer,
        source=source,
        integration=Integration.objects.get(workspace=workspace, kind="segment"),
        email=email,
        password=PASSWORD,
    )
