"""POST /v1/identify and GET /v1/customer."""

import json

import pytest
from django.test import Client

from hub.models import Customer
from hub.services.customers import customer_identify

pytestmark = pytest.mark.django_db


def identify(client, body):
    return client.post("/v1/identify", json.dumps(body), content_type="application/json")


def test_identify_creates_then_updates_and_merges(api_client, app):
    first = identify(
        api_client,
        {
            "platformId": "1",
            "name": "A",
            "customFields": {"a": 1},
            "contacts": [{"email": "X@a.test", "name": "X"}],
        },
    )
    assert first.status_code == 200
    token = first.json()["apiToken"]
    second = identify(
        api_client,
        {
            "myshopifyDomain": "a.myshopify.com",
            "platformId": "1",
            "customFields": {"b": 2},
            "contacts": [{"email": "x@a.test", "phone": "1"}, {"email": "y@a.test"}],
        },
    )
    assert second.json()["apiToken"] == token  # the same token until rotated
    customer = Customer.objects.get(app=app)
    assert customer.custom_fields == {"a": 1, "b": 2}
    assert customer.name == "A" and customer.myshopify_domain == "a.myshopify.com"
    assert sorted(customer.contacts.values_list("email", "name", "phone")) == [
        ("x@a.test", "X", "1"),
        ("y@a.test", "", ""),
    ]


def test_identify_matches_by_domain(api_client, app):
    identify(api_client, {"myshopifyDomain": "b.myshopify.com"})
    identify(api_client, {"myshopifyDomain": "B.myshopify.com", "platformId": "22"})
    assert Customer.objects.get(app=app).platform_id == "22"


def test_rotate_api_token_invalidates_the_old_one(api_client, app):
    old = identify(api_client, {"platformId": "1"}).json()["apiToken"]
    new = identify(api_client, {"platformId": "1", "rotateApiToken": True}).json()["apiToken"]
    assert new != old
    headers = {"X-Mantle-App-Id": str(app.public_id)}
    assert (
        Client(headers={**headers, "X-Mantle-Customer-Api-Token": old}).get("/v1/customer").status_code == 401
    )
    assert (
        Client(headers={**headers, "X-Mantle-Customer-Api-Token": new}).get("/v1/customer").status_code == 200
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "no id"},
        {"platformId": "1", "customFields": []},
        {"platformId": "1", "contacts": [{}]},
        {"platformId": "1", "tags": "a"},
        {"platformId": "1", "createdAt": "never"},
        {"platformId": "1", "rotateApiToken": "yes"},
        {"platformId": {"a": 1}},
        [1],
    ],
)
def test_bad_identify_is_400_and_stores_nothing(api_client, app, body):
    response = identify(api_client, body)
    assert response.status_code == 400 and response.json()["error"]
    assert not Customer.objects.filter(app=app).exists()


def test_identify_needs_the_api_key_not_a_customer_token(app):
    result = customer_identify(app=app, platform_id="1")
    client = Client(
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": result.api_token}
    )
    assert identify(client, {"platformId": "2"}).status_code == 403
    assert not Customer.objects.filter(platform_id="2").exists()


def test_get_customer_by_id_and_404_for_other_apps_customers(api_client, app):
    from tests.factories import AppFactory

    mine = customer_identify(app=app, platform_id="1", name="Mine").customer
    theirs = customer_identify(app=AppFactory(), platform_id="9", name="Theirs").customer
    assert api_client.get(f"/v1/customer?id={mine.public_id}").json()["customer"]["name"] == "Mine"
    assert api_client.get("/v1/customer?id=1").json()["customer"]["id"] == str(mine.public_id)
    assert api_client.get(f"/v1/customer?id={theirs.public_id}").status_code == 404
    assert api_client.get("/v1/customer?id=9").status_code == 404
    assert api_client.get("/v1/customer").status_code == 400


def test_customer_token_of_another_app_is_refused(app):
    from tests.factories import AppFactory

    other = customer_identify(app=AppFactory(), platform_id="1")
    client = Client(
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-Customer-Api-Token": other.api_token}
    )
    assert client.get("/v1/customer").status_code == 401


def test_identify_matched_by_domain_cannot_take_another_customers_platform_id(api_client, app):
    """Found by the fuzzer: this used to overwrite the platform and end in an IntegrityError (500)."""
    assert (
        identify(api_client, {"platformId": "0", "myshopifyDomain": "zero.myshopify.com"}).status_code == 200
    )
    assert identify(api_client, {"platform": "other", "platformId": "0"}).status_code == 200
    response = identify(api_client, {"platform": "other", "myshopifyDomain": "zero.myshopify.com"})
    assert response.status_code == 200
    assert Customer.objects.get(app=app, myshopify_domain="zero.myshopify.com").platform == "shopify"
    clash = identify(api_client, {"myshopifyDomain": "zero.myshopify.com", "platformId": "taken"})
    assert clash.status_code == 200
    identify(api_client, {"platformId": "mine"})
    conflict = identify(api_client, {"myshopifyDomain": "zero.myshopify.com", "platformId": "mine"})
    assert conflict.status_code == 409 and "belongs to another customer" in conflict.json()["error"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/v1/customer?id=%00", None),
        ("post", "/v1/identify", '{"platformId": "1", "customFields": {"a": "x\\u0000y"}}'),
        ("post", "/v1/usage_events", '{"eventName": "x\\u0000", "customerId": "s"}'),
    ],
)
def test_nul_characters_are_a_clear_400(api_client, app, method, url, body):
    """Found by the fuzzer: PostgreSQL stores no NUL, and used to answer 500."""
    if method == "get":
        response = api_client.get(url)
    else:
        response = api_client.post(url, body, content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    assert not Customer.objects.filter(app=app).exists()
