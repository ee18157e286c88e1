"""Each factory makes a row that passes its model's validation and the database's constraints."""

import pytest

from tests import factories

pytestmark = pytest.mark.django_db

FACTORIES = [
    getattr(factories, name)
    for name in sorted(dir(factories))
    if name.endswith("Factory") and hasattr(getattr(factories, name), "_meta")
]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_a_factory_makes_a_valid_row_and_a_second_one_beside_it(factory):
    first, second = factory(), factory()
    assert first.pk is not None and second.pk is not None and first.pk != second.pk
    exclude = ["password"] if factory is factories.UserFactory else []
    first.full_clean(exclude=exclude)


def test_a_placeholder_customer_is_marked_so():
    assert factories.CustomerFactory(placeholder=True).is_placeholder is True


def test_a_plan_limit_counts_a_metric_of_the_plans_app():
    limit = factories.PlanUsageLimitFactory()
    assert limit.metric.app_id == limit.plan.app_id


def test_an_integration_subscribes_the_apps_it_is_given():
    app = factories.AppFactory()
    assert list(factories.IntegrationFactory(apps=[app]).apps.all()) == [app]
