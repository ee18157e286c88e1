"""The Plans screen of an app: list, create, edit with usage limits per metric, archive and restore."""

import pytest
from django.urls import reverse

from events.metrics.definitions import definition_validate
from events.metrics.services import metric_create
from events.models import PlanUsageLimit
from hub.errors import Conflict
from hub.models import Plan
from hub.services import lifecycle
from hub.services.customers import customer_identify
from hub.services.plans import plan_save
from tests.factories import AppFactory, MembershipFactory, PlanUsageLimitFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def metric(app):
    return metric_create(
        app=app, definition=definition_validate(name="Jobs", event_name="job", aggregation="count")
    )


def _post(client, url, metric=None, **fields):
    data = {"name": "Pro", "amount": "49", "currency": "USD", "interval": "EVERY_30_DAYS", **fields}
    return client.post(url, data)


def test_create_a_plan_with_a_usage_limit_and_see_it_listed(logged_in, app, metric):
    url = reverse("plan_create", args=[app.public_id])
    response = _post(
        logged_in, url, **{f"limit_{metric.public_id}": "1,000", f"thresholds_{metric.public_id}": "50, 100"}
    )
    assert response.status_code == 302
    plan = Plan.objects.get(app=app, name="Pro")
    assert (plan.amount, plan.currency, plan.interval) == (49, "USD", "EVERY_30_DAYS")
    usage_limit = PlanUsageLimit.objects.get(plan=plan, metric=metric)
    assert (usage_limit.limit, usage_limit.thresholds) == (1000, [50, 100])
    page = logged_in.get(reverse("plans", args=[app.public_id])).content.decode()
    assert "Pro" in page and "Jobs" in page and "49.00 USD" in page


def test_a_wrong_limit_or_a_taken_name_saves_nothing_and_says_why(logged_in, app, metric):
    plan_save(app=app, name="Basic", amount=9, currency="USD", interval="EVERY_30_DAYS")
    url = reverse("plan_create", args=[app.public_id])
    response = _post(logged_in, url, **{f"limit_{metric.public_id}": "-5"})
    assert response.status_code == 400 and "greater than zero" in response.content.decode()
    assert not Plan.objects.filter(name="Pro").exists()
    response = _post(logged_in, url, name="Basic")
    assert response.status_code == 400 and "already has a plan named" in response.content.decode()
    assert Plan.objects.filter(app=app).count() == 1


def test_edit_renames_reprices_and_removes_a_limit(logged_in, app, metric):
    plan = plan_save(app=app, name="Basic", amount=9, currency="USD", interval="EVERY_30_DAYS")
    PlanUsageLimitFactory(plan=plan, metric=metric, limit=10, thresholds=[80, 100])
    url = reverse("plan_edit", args=[app.public_id, plan.public_id])
    assert 'value="10"' in logged_in.get(url).content.decode()
    response = _post(logged_in, url, name="Starter", amount="12.50", currency="EUR", interval="ANNUAL")
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.name, str(plan.amount), plan.currency, plan.interval) == (
        "Starter",
        "12.50",
        "EUR",
        "ANNUAL",
    )
    assert not PlanUsageLimit.objects.filter(plan=plan).exists()


def test_an_archived_plan_takes_no_new_subscriptions_but_keeps_its_own(logged_in, app):
    plan = plan_save(app=app, name="Legacy", amount=5, currency="USD", interval="EVERY_30_DAYS")
    on_it = customer_identify(app=app, platform_id="shop-1").customer
    lifecycle.subscription_subscribe(customer=on_it, plan=plan)
    logged_in.post(reverse("plan_archive", args=[app.public_id, plan.public_id]))
    plan.refresh_from_db()
    assert plan.archived_at is not None
    newcomer = customer_identify(app=app, platform_id="shop-2").customer
    with pytest.raises(Conflict, match="archived"):
        lifecycle.subscription_subscribe(customer=newcomer, plan=plan)
    customer_page = logged_in.get(reverse("customer_detail", args=[app.public_id, newcomer.public_id]))
    assert ">Legacy (5.00 USD)<" not in customer_page.content.decode()
    assert on_it.subscriptions.get().plan == plan  # kept
    logged_in.post(reverse("plan_archive", args=[app.public_id, plan.public_id]), {"restore": "1"})
    plan.refresh_from_db()
    assert plan.archived_at is None
    lifecycle.subscription_subscribe(customer=newcomer, plan=plan)


def test_the_metric_and_customer_pages_lead_to_the_plans_screen(logged_in, app, metric):
    customer = customer_identify(app=app, platform_id="shop-1").customer
    plans_url = reverse("plans", args=[app.public_id])
    metric_page = logged_in.get(
        reverse("metric_detail", args=[app.public_id, metric.public_id])
    ).content.decode()
    customer_page = logged_in.get(
        reverse("customer_detail", args=[app.public_id, customer.public_id])
    ).content.decode()
    assert reverse("plan_create", args=[app.public_id]) in metric_page
    assert plans_url in customer_page


def test_plans_of_another_workspace_are_not_found(client, app):
    plan = plan_save(app=app, name="Basic", amount=9, currency="USD", interval="EVERY_30_DAYS")
    stranger = UserFactory()
    MembershipFactory(user=stranger)
    client.force_login(stranger)
    assert client.get(reverse("plans", args=[app.public_id])).status_code == 404
    assert client.get(reverse("plan_edit", args=[app.public_id, plan.public_id])).status_code == 404
    other_app = AppFactory()
    assert client.post(reverse("plan_archive", args=[other_app.public_id, plan.public_id])).status_code == 404
