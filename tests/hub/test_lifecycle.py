"""Lifecycle services and their API: every change records one Activity; illegal transitions are 409."""

import json

import pytest
from django.contrib.admin.sites import site
from django.test import Client

from hub.config_apply import config_apply
from hub.errors import Conflict
from hub.models import Activity, Installation, Plan, Subscription
from hub.services import lifecycle
from hub.services.customers import customer_identify
from hub.services.plans import plan_upsert

pytestmark = pytest.mark.django_db


def kinds(customer):
    return list(
        Activity.objects.filter(customer=customer).order_by("created_at").values_list("kind", flat=True)
    )


def call(client, method, path, body=None, **headers):
    return client.generic(
        method, path, json.dumps(body) if body is not None else "", content_type="application/json", **headers
    )


def test_first_identify_installs_and_identify_after_uninstall_reinstalls(app):
    customer = customer_identify(app=app, platform_id="s1").customer
    customer_identify(app=app, platform_id="s1", name="again")  # already installed: nothing new
    assert kinds(customer) == ["installed"]
    lifecycle.installation_uninstall(customer=customer)
    customer_identify(app=app, platform_id="s1")
    assert kinds(customer) == ["installed", "uninstalled", "installed"]
    first, _, reinstall = Activity.objects.filter(customer=customer).order_by("created_at")
    assert first.properties["reinstall"] is False and reinstall.properties["reinstall"] is True
    assert Installation.objects.get(customer=customer).status == "installed"


def test_the_eleven_activities_and_their_properties(customer, plans):
    basic, pro = plans
    lifecycle.installation_freeze(customer=customer)
    lifecycle.installation_reactivate(customer=customer)
    lifecycle.review_create(customer=customer, rating=5, text="Great")
    lifecycle.subscription_subscribe(customer=customer, plan=basic)
    lifecycle.subscription_subscribe(customer=customer, plan=pro)
    lifecycle.subscription_subscribe(customer=customer, plan=basic)
    lifecycle.subscription_freeze(customer=customer)
    lifecycle.subscription_unfreeze(customer=customer)
    lifecycle.subscription_cancel(customer=customer, reason="too dear")
    lifecycle.installation_uninstall(customer=customer)
    assert kinds(customer) == [
        "installed", "installation_frozen", "installation_reactivated", "reviewed", "subscribed",
        "upgraded", "downgraded", "subscription_frozen", "subscription_unfrozen", "unsubscribed",
        "uninstalled",
    ]  # fmt: skip
    # The eleven of seed 000; the usage kinds are billing signals (tests/events/test_usage_limits.py).
    assert set(kinds(customer)) == set(Activity.SEED_KINDS)
    upgraded = Activity.objects.get(customer=customer, kind="upgraded")
    assert upgraded.properties.items() >= {
        "plan": "Pro", "price": 29.0, "interval": "ANNUAL", "previous_plan": "Basic", "previous_price": 9.99,
        "app": customer.app.name, "platform_id": "shop-1",
    }.items()  # fmt: skip
    assert Activity.objects.get(customer=customer, kind="reviewed").properties["rating"] == 5
    assert (
        Activity.objects.get(customer=customer, kind="unsubscribed").properties["cancel_reason"] == "too dear"
    )


def test_a_change_to_an_equally_priced_plan_is_a_plan_change_neither_upgrade_nor_downgrade(customer, plans):
    basic, pro = plans
    monthly_pro, _ = plan_upsert(app=customer.app, name="Pro monthly", amount=29)
    lifecycle.subscription_subscribe(customer=customer, plan=pro)

    subscription, kind = lifecycle.subscription_subscribe(customer=customer, plan=monthly_pro)

    assert kind == "plan_changed" and subscription.plan == monthly_pro
    changed = Activity.objects.get(customer=customer, kind="plan_changed")
    assert (
        changed.properties.items() >= {"plan": "Pro monthly", "previous_plan": "Pro", "price": 29.0}.items()
    )
    assert not Activity.objects.filter(customer=customer, kind__in=["upgraded", "downgraded"]).exists()
    assert lifecycle.subscription_subscribe(customer=customer, plan=basic)[1] == "downgraded"


def test_uninstall_cancels_the_open_subscription(customer, plans):
    lifecycle.subscription_subscribe(customer=customer, plan=plans[0])
    lifecycle.installation_uninstall(customer=customer)
    assert Subscription.objects.get(customer=customer).status == "cancelled"
    assert kinds(customer)[-2:] == ["uninstalled", "unsubscribed"]


@pytest.mark.parametrize(
    ("setup", "illegal"),
    [
        ([], lambda c, p: lifecycle.installation_reactivate(customer=c)),
        ([], lambda c, p: lifecycle.installation_install(customer=c)),
        ([lifecycle.installation_freeze], lambda c, p: lifecycle.installation_freeze(customer=c)),
        ([lifecycle.installation_freeze], lambda c, p: lifecycle.subscription_subscribe(customer=c, plan=p)),
        ([lifecycle.installation_uninstall], lambda c, p: lifecycle.installation_uninstall(customer=c)),
        ([], lambda c, p: lifecycle.subscription_cancel(customer=c)),
        ([], lambda c, p: lifecycle.subscription_freeze(customer=c)),
    ],
)
def test_illegal_transitions_conflict_and_record_nothing(customer, plans, setup, illegal):
    for step in setup:
        step(customer=customer)
    before = kinds(customer)
    with pytest.raises(Conflict):
        illegal(customer, plans[0])
    assert kinds(customer) == before


def test_a_failed_transition_leaves_no_activity_behind(customer, plans, monkeypatch):
    """The activity is written in the transaction of the change: both or neither."""

    def boom(**kwargs):
        raise RuntimeError("after the activity")

    monkeypatch.setattr(lifecycle, "subscription_cancel", boom)
    lifecycle.subscription_subscribe(customer=customer, plan=plans[0])
    with pytest.raises(RuntimeError):
        lifecycle.installation_uninstall(customer=customer)
    assert kinds(customer) == ["installed", "subscribed"]
    assert Installation.objects.get(customer=customer).status == "installed"


def test_mantle_subscriptions_api_with_the_customer_token(app, plans):
    token = customer_identify(app=app, platform_id="shop-9").api_token
    client = Client(headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": token})
    basic, pro = plans
    created = call(client, "POST", "/v1/subscriptions", {"planId": str(basic.public_id)})
    assert created.status_code == 200, created.content
    assert created.json()["plan"]["name"] == "Basic" and created.json()["confirmType"] == "subscribe"
    again = call(client, "POST", "/v1/subscriptions", {"planId": str(basic.public_id)})
    assert again.status_code == 409 and "already subscribed" in again.json()["error"]
    changed = call(client, "POST", "/v1/subscriptions", {"planIds": [str(pro.public_id)]})
    assert changed.json()["confirmType"] == "plan_change" and changed.json()["plan"]["name"] == "Pro"
    updated = call(client, "PUT", "/v1/subscriptions", {"id": created.json()["id"], "cappedAmount": 50})
    assert updated.json()["usageChargeCappedAmount"] == 50.0
    installs = client.get("/v1/app_installations").json()["appInstallations"]
    assert installs[0]["installStatus"] == "installed" and installs[0]["subscription"]["planName"] == "Pro"
    cancelled = call(client, "DELETE", "/v1/subscriptions", {"cancelReason": "bye"})
    assert cancelled.json()["status"] == "cancelled"
    assert call(client, "DELETE", "/v1/subscriptions").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_put_subscriptions_with_a_wrong_id_changes_nothing(app, plans):
    """A PUT naming another subscription answers 404 and leaves the capped amount as it was.

    Without a test-wide transaction, so what the request commits is really committed.
    """
    token = customer_identify(app=app, platform_id="shop-7").api_token
    client = Client(headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": token})
    created = call(client, "POST", "/v1/subscriptions", {"planId": "Basic"}).json()
    set_once = call(client, "PUT", "/v1/subscriptions", {"id": created["id"], "cappedAmount": 10})
    assert set_once.status_code == 200, set_once.content

    wrong = call(client, "PUT", "/v1/subscriptions", {"id": str(plans[0].public_id), "cappedAmount": 99})

    assert wrong.status_code == 404, wrong.content
    assert str(Subscription.objects.get(public_id=created["id"]).capped_amount) == "10.00"


def test_transition_endpoints_with_the_api_key(api_client, app, customer, plans):
    ref = {"customerId": "shop-1"}
    assert call(api_client, "POST", "/v1/app_installations/freeze", ref).json()["status"] == "frozen"
    assert call(api_client, "POST", "/v1/app_installations/freeze", ref).status_code == 409
    assert call(api_client, "POST", "/v1/app_installations/unfreeze", ref).json()["status"] == "installed"
    assert call(api_client, "POST", "/v1/subscriptions", {**ref, "planId": "Basic"}).status_code == 200
    assert call(api_client, "POST", "/v1/subscriptions/freeze", ref).json()["status"] == "frozen"
    assert call(api_client, "POST", "/v1/subscriptions/unfreeze", ref).json()["status"] == "active"
    review = call(api_client, "POST", "/v1/reviews", {**ref, "rating": 4, "text": "ok"})
    assert review.status_code == 200 and review.json()["rating"] == 4
    assert call(api_client, "POST", "/v1/reviews", {**ref, "rating": 9}).status_code == 400
    gone = call(api_client, "POST", "/v1/app_installations/uninstall", ref)
    assert gone.json()["installStatus"] == "uninstalled"
    assert (
        call(api_client, "POST", "/v1/app_installations/install", ref).json()["installStatus"] == "installed"
    )
    assert (
        call(api_client, "POST", "/v1/app_installations/uninstall", {"customerId": "nobody"}).status_code
        == 404
    )
    assert call(api_client, "POST", "/v1/app_installations/uninstall").status_code == 400
    assert kinds(customer) == [
        "installed", "installation_frozen", "installation_reactivated", "subscribed", "subscription_frozen",
        "subscription_unfrozen", "reviewed", "uninstalled", "unsubscribed", "installed",
    ]  # fmt: skip


def test_hub_apply_declares_plans_idempotently():
    doc = {
        "workspace": "Plans Co",
        "apps": [{"name": "A", "plans": [{"name": "Basic", "price": 10}, {"name": "Pro", "price": 30}]}],
    }
    first = config_apply(document=doc)
    assert [p["created"] for p in first["apps"][0]["plans"]] == [True, True]
    second = config_apply(document=doc)
    assert [p["created"] for p in second["apps"][0]["plans"]] == [False, False]
    assert Plan.objects.filter(app__name="A").count() == 2
    with pytest.raises(Exception, match=r"plans\[0\]"):
        config_apply(document={"workspace": "Plans Co", "apps": [{"name": "A", "plans": [{"name": ""}]}]})


def test_admin_actions_use_the_services(customer, plans, rf):
    from django.contrib.auth import get_user_model
    from django.contrib.messages.storage.fallback import FallbackStorage

    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    request = rf.post("/admin/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    model_admin = site._registry[Installation]
    model_admin.freeze(request, Installation.objects.filter(customer=customer))
    model_admin.freeze(request, Installation.objects.filter(customer=customer))  # 409 reported, not raised
    assert kinds(customer) == ["installed", "installation_frozen"]
    assert any("Only an installed app" in str(m) for m in request._messages)
