import pytest

from hub.services import lifecycle
from hub.services.customers import customer_identify
from hub.services.plans import plan_upsert
from integrations.services import integration_save
from tests.segment_standin import SegmentStandIn


@pytest.fixture
def standin():
    server = SegmentStandIn(write_key="wk_live_123").start()
    yield server
    server.stop()


@pytest.fixture
def fast_retries(settings):
    settings.HUB_DELIVERY_BACKOFF_BASE = 0.2
    settings.HUB_DELIVERY_BACKOFF_MAX = 1.0
    settings.HUB_DELIVERY_TIMEOUT = 1.0
    settings.HUB_DELIVERY_PROBE_SECONDS = 0.2
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    return settings


@pytest.fixture
def segment(workspace, app, standin, fast_retries):
    """A Segment integration of the workspace sending every activity of `app` to the stand-in."""
    from hub.models import Activity

    return integration_save(
        workspace=workspace,
        name="Production",
        write_key="wk_live_123",
        region="custom",
        custom_host=standin.url,
        apps=[app],
        activities=list(Activity.Kind.values),
    )


def make_customer(app, ref: str, **fields):
    return customer_identify(app=app, platform_id=ref, **fields).customer


def all_eleven(app, ref: str = "shop-all"):
    """Drive one customer through the eleven activities; return the customer."""
    basic, _ = plan_upsert(app=app, name="Basic", amount=10)
    pro, _ = plan_upsert(app=app, name="Pro", amount=30)
    customer = make_customer(app, ref)
    lifecycle.installation_freeze(customer=customer)
    lifecycle.installation_reactivate(customer=customer)
    lifecycle.review_create(customer=customer, rating=4, text="Nice")
    lifecycle.subscription_subscribe(customer=customer, plan=basic)
    lifecycle.subscription_subscribe(customer=customer, plan=pro)
    lifecycle.subscription_subscribe(customer=customer, plan=basic)
    lifecycle.subscription_freeze(customer=customer)
    lifecycle.subscription_unfreeze(customer=customer)
    lifecycle.subscription_cancel(customer=customer)
    lifecycle.installation_uninstall(customer=customer)
    return customer
