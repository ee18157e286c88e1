"""The operator's console: every model is registered, lists and searches work, secrets never show."""

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from hub.services.customers import customer_identify
from tests.factories import AppFactory, UserFactory

pytestmark = pytest.mark.django_db

OUR_APPS = {"hub", "events", "integrations", "sources"}


def test_every_model_is_registered():
    missing = [
        m.__name__
        for m in apps.get_models()
        if m._meta.app_label in OUR_APPS and not admin.site.is_registered(m)
    ]
    assert missing == []


def test_changelists_and_search_render_without_secrets(app, api_key):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    result = customer_identify(app=app, platform_id="1", name="Acme")
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url + "?q=a")
        assert response.status_code == 200, url
        html = response.content.decode()
        assert api_key[0].secret_hash not in html and result.api_token not in html
    html = client.get(f"/admin/hub/apikey/{api_key[0].pk}/change/").content.decode()
    assert api_key[0].secret_hash not in html and api_key[1] not in html
    html = client.get(f"/admin/hub/customer/{result.customer.pk}/change/").content.decode()
    assert result.api_token not in html and result.customer.api_token_hash not in html


def test_admin_revoke_action_uses_the_service(app, api_key):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    client.post("/admin/hub/apikey/", {"action": "revoke", "_selected_action": [api_key[0].pk]})
    api_key[0].refresh_from_db()
    assert api_key[0].revoked_at is not None


# --- Lifecycle actions on customers: install, subscribe / change plan, review (hub.services.lifecycle) --------


@pytest.fixture
def staff_client():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _kinds(customer):
    return list(customer.activities.order_by("created_at").values_list("kind", flat=True))


def _action(client, action, customers, **data):
    return client.post(
        "/admin/hub/customer/",
        {"action": action, "_selected_action": [c.pk for c in customers], **data},
        follow=True,
    )


def _messages(response):
    return [str(m) for m in response.context["messages"]]


def test_admin_install_action_reinstalls_and_reports_conflicts(staff_client, app):
    from hub.services import lifecycle

    gone = customer_identify(app=app, platform_id="gone").customer
    lifecycle.installation_uninstall(customer=gone)
    there = customer_identify(app=app, platform_id="there").customer
    response = _action(staff_client, "install", [gone, there])
    assert _kinds(gone) == ["installed", "uninstalled", "installed"]
    assert _kinds(there) == ["installed"]  # already installed: a 409, reported, nothing recorded
    assert _messages(response) == [
        "Install: 1 done.",
        "Install: there: The app is already installed for this customer (installed).",
    ]


def test_admin_subscribe_action_asks_for_a_plan_of_the_app_then_subscribes(staff_client, app):
    from hub.services.plans import plan_upsert

    basic, _ = plan_upsert(app=app, name="Basic", amount=5)
    pro, _ = plan_upsert(app=app, name="Pro", amount=50)
    plan_upsert(app=AppFactory(), name="Elsewhere", amount=1)
    customer = customer_identify(app=app, platform_id="c1").customer
    page = _action(staff_client, "subscribe", [customer])
    html = page.content.decode()
    assert page.templates[0].name == "admin/hub/lifecycle_action.html"
    assert "Basic" in html and "Pro" in html and "Elsewhere" not in html  # only the app's plans
    assert _kinds(customer) == ["installed"]  # nothing done before a plan is chosen
    _action(staff_client, "subscribe", [customer], apply="1", plan=basic.public_id)
    response = _action(staff_client, "subscribe", [customer], apply="1", plan=pro.public_id)
    assert _messages(response) == ["Subscribe to Pro: 1 done."]
    _action(staff_client, "subscribe", [customer], apply="1", plan=pro.public_id)  # already on Pro: 409
    assert _kinds(customer) == ["installed", "subscribed", "upgraded"]
    assert customer.subscriptions.get().plan == pro


def test_admin_subscribe_action_refuses_customers_of_several_apps(staff_client, app):
    mine = customer_identify(app=app, platform_id="m").customer
    theirs = customer_identify(app=AppFactory(), platform_id="t").customer
    response = _action(staff_client, "subscribe", [mine, theirs])
    assert _messages(response) == ["Select customers of one app to choose its plan."]
    assert _kinds(mine) == ["installed"] and _kinds(theirs) == ["installed"]


def test_admin_review_action_creates_reviews_through_the_service(staff_client, app):
    customer = customer_identify(app=app, platform_id="r").customer
    page = _action(staff_client, "review", [customer], apply="1", rating="7")  # invalid: asked again
    assert page.templates[0].name == "admin/hub/lifecycle_action.html"
    assert "Select a valid choice" in page.content.decode() and not customer.reviews.exists()
    response = _action(staff_client, "review", [customer], apply="1", rating="4", text=" Solid ")
    assert _messages(response) == ["Review: 1 done."]
    review = customer.reviews.get()
    assert (review.rating, review.text) == (4, "Solid")
    assert _kinds(customer) == ["installed", "reviewed"]


def test_the_console_speaks_the_products_words(admin_client):
    """Grouped sections, right plurals and filter labels, autocomplete for apps, activities as boxes."""
    index = admin_client.get("/admin/").content.decode()
    for section in ("Workspaces and access", "Customers and billing", "Usage", "Sources", "Integrations"):
        assert f">{section}<" in index, section
    assert "Rollup batches" in index and "Inbox batches" in index
    assert "Operator's console" in index and "hub/admin.css" in index
    customers = admin_client.get("/admin/hub/customer/").content.decode()
    assert "By identified" in customers and "placeholder" not in customers.lower().replace("placeholder=", "")
    plan_add = admin_client.get("/admin/hub/plan/add/").content.decode()
    assert re.search(r'<select name="app"[^>]*class="admin-autocomplete"', plan_add)
    integration_add = admin_client.get("/admin/integrations/integration/add/").content.decode()
    assert 'type="checkbox" name="activities" value="installed"' in integration_add


def test_plans_in_the_console_pass_the_services_checks_and_members_are_read_only(admin_client, app):
    from hub.models import Membership, Plan
    from tests.factories import MembershipFactory

    form = {"app": app.pk, "name": "Pro", "amount": "49", "currency": "eur", "interval": "ANNUAL"}
    assert admin_client.post("/admin/hub/plan/add/", form).status_code == 302
    assert Plan.objects.get(name="Pro").currency == "EUR"
    refused = admin_client.post("/admin/hub/plan/add/", {**form, "name": "Odd", "currency": "E1"})
    assert "three-letter code" in refused.content.decode() and not Plan.objects.filter(name="Odd").exists()

    membership = MembershipFactory(role="owner")
    assert (
        admin_client.post(f"/admin/hub/membership/{membership.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert admin_client.get("/admin/hub/membership/add/").status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_every_model_has_a_right_plural_name():
    """English plurals, not Django's "+s" (batchs, activitys, classs)."""
    wrong = [
        f"{m.__name__}: {m._meta.verbose_name_plural}"
        for m in apps.get_models()
        if m._meta.app_label in OUR_APPS
        and re.search(r"(ch|sh|s|x|z|[^aeiou]y)s$", str(m._meta.verbose_name_plural))
    ]
    assert wrong == []
