"""Identify's round trips: a new customer is one statement, an identify saying nothing new writes
nothing, everything else takes the locked path with the same result as before."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from hub.models import Activity, App, Customer, CustomerForward, Installation
from hub.services.customer_forwards import customer_snapshot
from hub.services.customer_refs import customer_by_token
from hub.services.customers import customer_identify
from hub.services.lifecycle import installation_uninstall
from tests.query_plans import customers_with_lagging_statistics, rows_read, statements_with_params

pytestmark = pytest.mark.django_db


@contextmanager
def statements():
    """The SQL statements sent meanwhile, through Django's cursors and psycopg's own alike (the
    list is filled when the block ends)."""
    with statements_with_params() as sent:
        queries: list[str] = []
        yield queries
    queries.extend(q for q, _ in sent)


def identify(app, **fields):
    return customer_identify(app=app, platform_id="shop-1", myshopify_domain="one.myshopify.com", **fields)


def test_a_new_customer_its_installation_and_activity_are_one_statement(app):
    with statements() as sent:
        result = identify(app, name="Shop One", email="o@example.com", custom_fields={"tier": "gold"},
                          tags=["b", "a", "b"])  # fmt: skip
    assert len(sent) == 2, sent  # the lookup, then the insert of every row
    customer = Customer.objects.get(app=app)
    assert (result.created, result.first_identify, result.customer.pk) == (True, True, customer.pk)
    assert (customer.name, customer.email, customer.custom_fields, customer.tags) == (
        "Shop One", "o@example.com", {"tier": "gold"}, ["b", "a"])  # fmt: skip
    assert not customer.is_placeholder and customer.identified_at is not None
    assert customer_by_token(app=app, token=result.api_token) == customer
    assert customer.api_token == result.api_token  # stored encrypted, read back
    installation = Installation.objects.get(customer=customer)
    assert (installation.app_id, installation.status) == (app.pk, Installation.Status.INSTALLED)
    activity = Activity.objects.get(customer=customer)
    assert activity.kind == Activity.Kind.INSTALLED
    assert activity.occurred_at == installation.installed_at == customer.identified_at
    assert activity.customer_fields == {"tier": "gold"}
    assert activity.properties == {
        "app": app.name, "app_id": str(app.public_id), "customer_id": str(customer.public_id),
        "platform": "shopify", "platform_id": "shop-1", "myshopify_domain": "one.myshopify.com",
        "customer_name": "Shop One", "reinstall": False,
    }  # fmt: skip
    assert not CustomerForward.objects.exists()


def test_an_app_forwarding_customers_gets_the_new_customers_snapshot_in_the_same_statement(app):
    App.objects.filter(pk=app.pk).update(forward_customers=True)
    with statements() as sent:
        result = identify(app, name="Shop One")
    assert len(sent) == 2, sent
    forward = CustomerForward.objects.get(app=app)
    customer = Customer.objects.get(pk=result.customer.pk)
    assert (forward.kind, forward.object_id) == (CustomerForward.Kind.CUSTOMER, customer.pk)
    assert forward.snapshot == customer_snapshot(customer)


def test_an_identify_saying_nothing_new_reads_once_and_writes_nothing(app):
    first = identify(app, name="Shop One", custom_fields={"tier": "gold"}, tags=["a"])
    before = Customer.objects.get(pk=first.customer.pk)
    with statements() as sent:
        again = identify(app, name="Shop One", custom_fields={"tier": "gold"}, tags=["a"])
        also = customer_identify(app=app, platform_id="shop-1")  # fewer fields: nothing new either
    assert len(sent) == 2, sent
    assert all(s.lstrip().startswith("SELECT") for s in sent)
    assert again.api_token == also.api_token == first.api_token
    assert (again.created, again.first_identify) == (False, False)
    assert Customer.objects.get(pk=before.pk).updated_at == before.updated_at
    assert Activity.objects.filter(customer=before).count() == 1


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"name": "Renamed"}, lambda c: c.name == "Renamed"),
        ({"custom_fields": {"seats": 3}}, lambda c: c.custom_fields == {"tier": 1, "seats": 3}),
        # Equal in Python (1 == True), not in JSON: written.
        ({"custom_fields": {"tier": True}}, lambda c: c.custom_fields == {"tier": True}),
        ({"tags": ["b"]}, lambda c: c.tags == ["a", "b"]),
        ({"rotate_api_token": True}, lambda c: True),
    ],
)
def test_an_identify_with_something_new_writes_it(app, change, check):
    first = identify(app, custom_fields={"tier": 1}, tags=["a"])
    result = identify(app, **change)
    customer = Customer.objects.get(pk=first.customer.pk)
    assert check(customer)
    assert customer.updated_at > first.customer.updated_at
    assert (result.api_token != first.api_token) == ("rotate_api_token" in change)


def test_an_app_forwarding_customers_gets_a_snapshot_on_every_identify(app):
    identify(app, name="Shop One")
    App.objects.filter(pk=app.pk).update(forward_customers=True)
    identify(app, name="Shop One")
    assert CustomerForward.objects.filter(app=app, kind=CustomerForward.Kind.CUSTOMER).count() == 1


def test_an_identify_after_an_uninstall_reinstalls_though_it_says_nothing_new(app):
    first = identify(app, name="Shop One")
    installation_uninstall(customer=first.customer)
    identify(app, name="Shop One")
    assert Installation.objects.get(customer=first.customer).status == Installation.Status.INSTALLED
    assert Activity.objects.filter(customer=first.customer, kind=Activity.Kind.INSTALLED).count() == 2


def test_a_new_platform_id_for_a_domain_taken_by_a_placeholder_fills_the_placeholder(app):
    placeholder = Customer.objects.create(app=app, myshopify_domain="one.myshopify.com", is_placeholder=True)
    result = identify(app, name="Shop One")
    assert result.customer.pk == placeholder.pk
    assert Customer.objects.filter(app=app).count() == 1
    assert Installation.objects.filter(customer=placeholder).count() == 1


@pytest.mark.parametrize("fields", [{}, {"name": "Renamed"}, {"contacts": [{"email": "a@example.com"}]}])
def test_the_lookup_reads_two_unique_index_entries_while_the_statistics_lag(app, fields):
    """The lookup (unlocked, and the locked path's) reads only the unique indexes' entries, not every
    customer of the app (which the app's index offered, and the planner took, when the statistics
    made the app look small)."""
    customers_with_lagging_statistics(app, 2000)
    identify(app)
    with statements_with_params() as sent:
        identify(app, **fields)
    lookups = [(q, p) for q, p in sent if "platform_id" in q and q.lstrip().startswith("SELECT")]
    assert lookups, sent
    for query, params in lookups:
        read = rows_read(query, params, "hub_customer")
        assert read and all(n <= 2 for n in read), (query, read)
