"""The Customer view's Lifecycle card: what it shows, and its actions through the lifecycle services."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from hub.models import Activity, Installation, Review, Subscription
from hub.services import lifecycle
from hub.services.customers import customer_identify
from hub.services.plans import plan_upsert
from tests.factories import AppFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def detail_url(customer):
    return f"/apps/{customer.app.public_id}/customers/{customer.public_id}/"


def action_url(customer, action):
    return f"{detail_url(customer)}lifecycle/{action}/"


def kinds(customer):
    return list(
        Activity.objects.filter(customer=customer).order_by("created_at").values_list("kind", flat=True)
    )


def state(customer):
    """Every lifecycle row of the customer, to prove a refused action changed nothing."""
    return (
        list(Installation.objects.filter(customer=customer).values()),
        list(Subscription.objects.filter(customer=customer).order_by("pk").values()),
        list(Review.objects.filter(customer=customer).order_by("pk").values()),
        list(Activity.objects.filter(customer=customer).order_by("created_at").values()),
    )


def post(client, customer, action, data=None):
    """POST one action, follow it back to the Customer view; return the messages shown there."""
    response = client.post(action_url(customer, action), data or {}, follow=True)
    assert response.redirect_chain == [(detail_url(customer) + "#lifecycle", 302)], action
    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]
    html = response.content.decode()
    for level, text in shown:
        assert f'<div class="toast toast-{level}" role="status">{escape(text)}</div>' in html
    return shown


def card(html):
    """The Lifecycle card's HTML, from the include template."""
    match = re.search(r'<section class="card" id="lifecycle".*?</section>', html, re.S)
    assert match, "the Customer view has no Lifecycle card"
    return match.group(0)


def test_the_card_shows_installation_subscription_reviews_and_activities(logged_in, customer, plans):
    basic, pro = plans
    lifecycle.subscription_subscribe(customer=customer, plan=pro)
    lifecycle.review_create(customer=customer, rating=4, text="Does the job")
    html = card(logged_in.get(detail_url(customer)).content.decode())
    assert 'data-testid="installation-status"><span class="badge badge-ok">Installed' in html
    subscription = re.search(r'<dl class="props" data-testid="subscription">.*?</dl>', html, re.S).group(0)
    assert "Pro" in subscription and "29.00 USD · Annual" in subscription and "Active" in subscription
    assert "4/5" in html and "Does the job" in html
    assert re.findall(r"<tr><td>([^<]+)</td>", html) == [
        "Customer reviewed app",
        "Customer subscribed to plan",
        "Customer installed app",
    ]
    # The plan select lists the app's plans, the current one chosen; every form carries a CSRF token.
    assert f'<option value="{basic.public_id}" >Basic (9.99 USD)</option>' in html
    assert f'<option value="{pro.public_id}" selected>Pro (29.00 USD)</option>' in html
    forms = re.findall(r'<form method="post".*?</form>', html, re.S)
    assert len(forms) == 6  # freeze, uninstall, change plan, freeze subscription, cancel, review
    assert all("csrfmiddlewaretoken" in f for f in forms)


def test_each_action_calls_its_service_and_says_so(logged_in, customer, plans):
    basic, pro = plans
    steps = [
        ("subscribe", {"plan": basic.public_id}, "Subscribed to Basic."),
        ("subscribe", {"plan": pro.public_id}, "Upgraded to Pro."),
        ("subscribe", {"plan": basic.public_id}, "Downgraded to Basic."),
        ("subscription/freeze", {}, "Subscription frozen."),
        ("subscription/unfreeze", {}, "Subscription unfrozen."),
        ("subscription/cancel", {"reason": "too dear"}, "Subscription cancelled."),
        ("installation/freeze", {}, "Installation frozen."),
        ("installation/reactivate", {}, "Installation reactivated."),
        ("reviews", {"rating": "5", "text": "Great"}, "Review added."),
        ("uninstall", {}, "App uninstalled."),
        ("install", {}, "App installed."),
    ]
    for action, data, said in steps:
        assert post(logged_in, customer, action, data) == [("success", said)], action
    assert kinds(customer) == [
        "installed",
        "subscribed",
        "upgraded",
        "downgraded",
        "subscription_frozen",
        "subscription_unfrozen",
        "unsubscribed",
        "installation_frozen",
        "installation_reactivated",
        "reviewed",
        "uninstalled",
        "installed",
    ]
    assert Subscription.objects.get(customer=customer).cancel_reason == "too dear"
    assert Review.objects.get(customer=customer).rating == 5
    reinstall = Activity.objects.filter(customer=customer, kind="installed").order_by("created_at").last()
    assert reinstall.properties["reinstall"] is True


@pytest.mark.parametrize(
    ("action", "data", "error"),
    [
        ("install", {}, "The app is already installed for this customer (installed)."),
        ("installation/reactivate", {}, "Only a frozen installation can be reactivated (it is installed)."),
        ("subscription/cancel", {}, "The customer has no open subscription."),
        ("subscription/unfreeze", {}, "The customer has no open subscription."),
        ("subscribe", {}, "Plan: This field is required."),
        ("subscribe", {"plan": "not-a-uuid"}, "Plan: “not-a-uuid” is not a valid UUID."),
        ("reviews", {"rating": "9"}, "Rating: Select a valid choice. 9 is not one of the available choices."),
    ],
)
def test_a_refused_action_is_a_message_and_changes_nothing(logged_in, customer, plans, action, data, error):
    before = state(customer)
    assert post(logged_in, customer, action, data) == [("error", error)]
    assert state(customer) == before


def test_a_plan_of_another_app_cannot_be_chosen(logged_in, customer, plans):
    """The plan select is scoped to the customer's app: another app's plan id is not a choice."""
    other_plan, _ = plan_upsert(app=AppFactory(workspace=customer.app.workspace), name="X", amount=1)
    before = state(customer)
    shown = post(logged_in, customer, "subscribe", {"plan": other_plan.public_id})
    assert shown[0][0] == "error" and "Select a valid choice" in shown[0][1]
    assert state(customer) == before


def test_actions_are_post_only_and_need_a_csrf_token(user, customer, plans):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = state(customer)
    assert client.get(action_url(customer, "uninstall")).status_code == 405
    assert client.post(action_url(customer, "uninstall")).status_code == 403  # no token
    assert state(customer) == before
    html = client.get(detail_url(customer)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(action_url(customer, "uninstall"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and kinds(customer) == ["installed", "uninstalled"]


def test_another_workspace_gets_404_and_changes_nothing(customer, plans):
    stranger = MembershipFactory(user=UserFactory()).user
    client = Client()
    client.force_login(stranger)
    before = state(customer)
    for action in ["install", "uninstall", "installation/freeze", "subscription/cancel", "reviews"]:
        assert client.post(action_url(customer, action), {"rating": "5"}).status_code == 404, action
    assert client.post(action_url(customer, "subscribe"), {"plan": plans[0].public_id}).status_code == 404
    assert state(customer) == before


def test_a_customer_of_another_app_is_404_through_my_app(logged_in, app, plans):
    theirs = customer_identify(app=AppFactory(), platform_id="x").customer
    url = f"/apps/{app.public_id}/customers/{theirs.public_id}/lifecycle/uninstall/"
    assert logged_in.post(url).status_code == 404
    assert kinds(theirs) == ["installed"]


def test_the_card_costs_a_fixed_number_of_queries(logged_in, customer, plans):
    """No query per activity, review or plan (N+1): twenty more of each cost nothing more."""
    url = detail_url(customer)
    with CaptureQueriesContext(connection) as few:
        logged_in.get(url)
    for i in range(20):
        plan_upsert(app=customer.app, name=f"Plan {i}", amount=i)
        lifecycle.review_create(customer=customer, rating=3, text=f"review {i}")
    with CaptureQueriesContext(connection) as many:
        logged_in.get(url)
    assert len(many) == len(few)
